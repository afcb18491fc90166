"""gpuwatch in IPython and Jupyter (docs/notebooks.md): `%load_ext gpuwatch` registers the
`%%gpuwatch` cell magic, which records the cell in a gpuwatch session, named `gw` inside it,
and shows the analysis of the recording.

Imported by `gpuwatch.load_ipython_extension` only: `import gpuwatch` never imports IPython.
"""

from __future__ import annotations

import argparse
import ast
import os
from pathlib import Path
from typing import Any

from IPython.core.error import UsageError as IPythonUsageError
from IPython.core.magic import Magics, cell_magic, magics_class
from IPython.core.magic_arguments import argument, magic_arguments, parse_argstring
from IPython.display import display

from .analysis.pipeline import Analysis, analyze
from .backends import BINDINGS
from .errors import GpuwatchError, Terminated, UsageError
from .recorder import SAMPLER_MODES, Session
from .regions.timer import CHECK_EVERY
from .trace import Trace, default_out, partial_path

SESSION_NAME = "gw"  # the session's name inside the cell, unless --name says otherwise


def fresh_out() -> Path:
    """The trace of a cell run without --out: a new gpuwatch-DATE-TIME.parquet in the working
    directory each run (a counter added where that is taken: runs within one second)."""
    p = first = default_out()
    n = 2
    while os.path.lexists(p) or os.path.lexists(partial_path(p)):
        p = first.with_name(f"{first.stem}-{n}.parquet")
        n += 1
    return p


def _sample_gpus(v: str) -> str | list[int]:
    from .cli.record import sample_gpus  # (the command's own rules and words)

    try:
        got = sample_gpus(v)
    except UsageError as e:  # (argparse names the option itself: "argument --sample-gpus:")
        raise argparse.ArgumentTypeError(str(e).removeprefix("--sample-gpus ")) from None
    assert got is not None  # (None only for None: v is a string)
    return got


@magics_class
class GpuwatchMagics(Magics):
    @magic_arguments()
    @argument("--device", default=None,
              help="auto, cuda:N, N, sim:PROFILE or standin (default: $GPUWATCH_DEVICE, else "
                   "auto: the first NVIDIA GPU)")
    @argument("-o", "--out", default=None, metavar="PATH",
              help="the trace file; running the cell again replaces it (see --no-overwrite). "
                   "Default: a new gpuwatch-DATE-TIME.parquet per run, in the working "
                   "directory")
    @argument("--overwrite", action=argparse.BooleanOptionalAction, default=True,
              help="replace an existing trace at --out (default); --no-overwrite refuses, as "
                   "session() does")
    @argument("--dataset", default=None, metavar="DIR",
              help="write into a fleet dataset directory instead of --out")
    @argument("-n", "--name", default=SESSION_NAME,
              help=f"the session's name in the cell and after it (default {SESSION_NAME})")
    @argument("-a", "--analysis", default=None, metavar="NAME",
              help="also bind the analysis to this name (it is the cell's result: Out[N], _)")
    @argument("--no-analysis", action="store_true",
              help="record only: no analysis, nothing shown but the trace's path")
    @argument("--sample-hz", type=float, default=1000.0, help="telemetry samples per second")
    @argument("--sampler", choices=SAMPLER_MODES, default="auto")
    @argument("--sample-gpus", type=_sample_gpus, default=None, metavar="all|I,J",
              help="the GPUs to sample (default: the inference GPU)")
    @argument("--binding", choices=BINDINGS, default="cuda")
    @argument("--kernels", action="store_true",
              help="record every kernel and copy (CUPTI on a real GPU)")
    @argument("--seed", type=int, default=0, help="random seed (simulated GPUs)")
    @argument("--check-every", type=int, default=CHECK_EVERY,
              help="check one region in this many for GPU work outside its stream (0: never)")
    @argument("--probe", action=argparse.BooleanOptionalAction, default=None,
              help="stamp the in-band SM clock around regions (default: the device's)")
    @argument("--probe-every-ms", type=float, default=None, metavar="MS")
    @cell_magic
    def gpuwatch(self, line: str, cell: str) -> Analysis | None:
        """Record this cell in a gpuwatch session and show the analysis.

        Inside the cell the session is `gw` (--name): time work with `gw.infer(fn, *args)`,
        `with gw.span(name):`, or an engine from `gw.engine("builtin:small")`; anything the
        cell calls through `gpuwatch.timed` objects is timed too. The cell's result is the
        analysis (shown as the report inline); `gw.trace` is the trace. Where the cell raises,
        the trace is kept (status failed; interrupted on a stop), said so and analysed, and the
        error is raised as usual."""
        __tracebackhide__ = True  # (IPython leaves this frame out of a cell's traceback)
        args = parse_argstring(self.gpuwatch, line)
        for label, name in (("--name", args.name), ("--analysis", args.analysis)):
            if name is not None and not name.isidentifier():
                raise IPythonUsageError(f"{label} takes a Python name, not {name!r}")
        shell = self.shell
        assert shell is not None
        if args.out is not None and args.dataset is not None:  # (the magic's own words)
            raise IPythonUsageError("gpuwatch: give either --out or --dataset, not both")
        code = _compile(shell, line, cell)  # (a syntax error stops here: nothing is recorded)
        out = args.out if args.out is not None or args.dataset is not None else fresh_out()
        if out is not None and not args.overwrite and os.path.lexists(out):
            raise IPythonUsageError(f"gpuwatch: {out} already exists; pick another --out, or "
                                    f"leave out --no-overwrite to replace it")
        try:
            s = Session(args.device, out, sample_hz=args.sample_hz, sampler=args.sampler,
                        sample_gpus=args.sample_gpus, binding=args.binding,
                        kernels=args.kernels, seed=args.seed, dataset=args.dataset,
                        check_every=args.check_every, probe=args.probe,
                        overwrite=args.overwrite, probe_every_ms=args.probe_every_ms)
            s.start()
        except GpuwatchError as e:  # bad device, an existing trace, a session already on
            raise IPythonUsageError(f"gpuwatch: {e}") from None
        shell.user_ns[args.name] = s
        error: BaseException | None = None
        try:
            exec(code, shell.user_global_ns, shell.user_ns)
        except BaseException as e:  # (KeyboardInterrupt too: the trace says interrupted)
            error = e
        try:
            s.__exit__(type(error) if error else None, error,
                       error.__traceback__ if error else None)
        except BaseException as e:  # a GPU error found as the session ended: the trace has it
            error = error or e
        analysis = _report(s, error, not args.no_analysis, args.name)
        if analysis is not None and args.analysis is not None:
            shell.user_ns[args.analysis] = analysis
        if error is not None:
            if analysis is not None:
                display(analysis)
            raise error
        # (IPython looks for the `;` in the cell it ran, a call of this magic: it never sees it)
        return None if _ends_with_semicolon(cell) else analysis


def _ends_with_semicolon(cell: str) -> bool:
    """Does the cell's last token (comments and blank lines aside) be `;`, as IPython reads a
    cell whose result it does not show?"""
    import io
    import tokenize

    try:
        tokens = list(tokenize.generate_tokens(io.StringIO(cell).readline))
    except (tokenize.TokenError, SyntaxError):
        return False
    for tok in reversed(tokens):
        if tok.type in (tokenize.ENDMARKER, tokenize.NL, tokenize.NEWLINE, tokenize.COMMENT,
                        tokenize.INDENT, tokenize.DEDENT):
            continue
        return tok.type == tokenize.OP and tok.string == ";"
    return False


def _compile(shell: Any, line: str, cell: str) -> Any:
    """The cell as IPython would run it (its %magics and !commands, the shell's AST
    transformers), numbered as the notebook shows it (the magic's line first), under a name
    that tracebacks show its lines for (Cell In[N], line L)."""
    source = shell.transform_cell(cell)
    try:  # (IPython counts the running cell already: it is execution_count - 1)
        name = shell.compile.cache(f"%%gpuwatch {line}\n{source}",
                                   max(1, shell.execution_count - 1), raw_code=cell)
    except Exception:  # an IPython without the cache: tracebacks show no source lines
        name = "<gpuwatch cell>"
    try:
        parsed = shell.compile.ast_parse(source, filename=name)
    except SyntaxError as e:  # (shown at its line of the cell as the notebook numbers it,
        if e.lineno is not None:  # the magic's line first; not "<unknown>, line 1")
            e.lineno += 1
        if e.end_lineno is not None:
            e.end_lineno += 1
        e.filename = name
        raise e.with_traceback(None) from None
    tree = ast.increment_lineno(shell.transform_ast(parsed), 1)
    return shell.compile(tree, name, "exec")


def _report(s: Session, error: BaseException | None, analyse: bool,
            name: str = SESSION_NAME) -> Analysis | None:
    """One line on the recording (the trace, its status, what the cell raised), and its
    analysis where there is one."""
    raised = "" if error is None else \
        f"the cell raised {type(error).__name__}" + (f": {error}" if str(error) else "")
    if isinstance(error, (KeyboardInterrupt, Terminated)):
        raised = "the cell was interrupted"
    if s.left_previous:  # (the session said so on stderr, and an error shows as raised:
        return None  # saying it again was two near-identical lines)
    if s.discarded:
        print(f"gpuwatch: {raised}; nothing was timed, so no trace was written")
        return None
    try:
        trace: Trace = s.trace
    except Exception as e:  # not written (disk full) or unreadable
        why = s.write_error or f"{type(e).__name__}: {e}"
        print(f"gpuwatch: {raised + '; ' if raised else ''}no trace at {s.out}: {why}")
        return None
    kinds = trace.inferences["kind"] if "kind" in trace.inferences else None
    n = int((kinds == "inference").sum()) if kinds is not None else len(trace.inferences)
    status = trace.meta.get("status", "unknown")
    what = f"{n} inference{'' if n == 1 else 's'}, status {status}" + (
        f", {trace.meta.get('error')}" if raised == "" and trace.meta.get("error") else "")
    if raised:
        print(f"gpuwatch: {raised}; the trace is kept: {s.out} ({what})")
    else:
        print(f"gpuwatch: trace {s.out} ({what})")
    if n == 0 and (kinds is None or not (kinds == "span").any()):
        print(f"gpuwatch: nothing was timed: in the cell, time work with {name}.infer(fn, "
              f"*args), `with {name}.span(label):`, or an engine from {name}.engine()")
    if not analyse:
        return None
    try:
        return analyze(trace)
    except Exception as e:
        print(f"gpuwatch: the trace could not be analysed: {type(e).__name__}: {e}")
        return None


def load_ipython_extension(ipython: Any) -> None:
    ipython.register_magics(GpuwatchMagics)
