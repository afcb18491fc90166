"""What the tests share (fixtures that record are in conftest.py):

- the CLI as tests run it: in a subprocess, as a user does (`gw`), or in this process
  (`gw_here`), where the test is about the command's own logic (its usage errors, what it
  makes of a bad file), not about the process (signals, exit paths, streams, the interpreter's
  exit). A subprocess costs ~0.5-1 s of CPU before the command runs (an interpreter importing
  numpy, pyarrow and pandas); the suite runs a few hundred of them on 2 cores
  (docs/install.md);
- `fake_torch`: the one stand-in for PyTorch in this process;
- `analysed`: a committed fixture's analysis, made once per test process;
- `record_sim`: the one loop that records a gap sweep on a simulated GPU."""

from __future__ import annotations

import contextlib
import importlib
import io
import os
import signal
import subprocess
import sys
import types
import warnings
from pathlib import Path
from typing import Callable, Iterator, Mapping

from gpuwatch.cli import entry, main


def gw(*args: str | os.PathLike[str], cwd: str | os.PathLike[str] | None = None,
       env: Mapping[str, str] | None = None, module: str = "gpuwatch",
       timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """`python -m MODULE ARGS` in a subprocess (MODULE: gpuwatch, or gpuwatch.record and the
    like): its exit status, stdout and stderr."""
    return subprocess.run([sys.executable, "-m", module, *map(str, args)], capture_output=True,
                          text=True, cwd=cwd, env=None if env is None else dict(env),
                          timeout=timeout)


@contextlib.contextmanager
def _environment(env: Mapping[str, str] | None) -> Iterator[None]:
    if env is None:
        yield
        return
    saved = dict(os.environ)
    os.environ.clear()
    os.environ.update(env)
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


def gw_here(*args: str | os.PathLike[str], cwd: str | os.PathLike[str] | None = None,
            env: Mapping[str, str] | None = None,
            module: str = "gpuwatch") -> subprocess.CompletedProcess[str]:
    """What `gw` gives, from the same command run in this process by the console script's
    own entry points (`gpuwatch.cli.entry`, or gpuwatch.X's `main(XCommand())`). Warnings print
    to its stderr as in a fresh process (not to pytest's record); the working directory, the
    environment, the warnings machinery and the SIGINT handler are given back. Not for
    `run`: it runs a program in its process (its sys.argv, __main__, sys.path) and writes its
    report to a duplicate of fd 2, past any capture; test it with `gw`."""
    argv = [str(a) for a in args]
    if (argv[:1] == ["run"] and module == "gpuwatch") or module == "gpuwatch.run":
        raise ValueError("gw_here cannot run `gpuwatch run` (see its docstring): use gw")
    out, err = io.StringIO(), io.StringIO()
    here = os.getcwd()
    formatwarning = warnings.formatwarning
    sigint = signal.getsignal(signal.SIGINT)  # (a command interrupted ignores SIGINT after)
    try:
        with _environment(env), warnings.catch_warnings(), \
                contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            warnings.resetwarnings()  # (Python's own defaults, not pytest's filters)
            for category in (DeprecationWarning, PendingDeprecationWarning, ImportWarning,
                             ResourceWarning):  # (what a fresh interpreter ignores; a file
                # another test left unclosed must not speak in this command's stderr)
                warnings.filterwarnings("ignore", category=category, append=True)
            warnings.showwarning = _print_warning
            if cwd is not None:
                os.chdir(cwd)
            try:
                if module == "gpuwatch":
                    code = entry(argv)
                else:  # (python -m gpuwatch.X: its own prog in messages, as there)
                    name = module.split(".", 1)[1]
                    cls = getattr(importlib.import_module(f"gpuwatch.cli.{name}"),
                                  f"{name.capitalize()}Command")
                    code = main(cls(), argv)
            except SystemExit as e:  # (argparse: --help, a usage error; as Python exits)
                code = e.code if isinstance(e.code, int) else 0 if e.code is None else 1
                if not isinstance(e.code, int) and e.code is not None:
                    print(e.code, file=sys.stderr)  # (Python prints a message it exits with)
    finally:
        os.chdir(here)
        warnings.formatwarning = formatwarning  # (the CLI sets its one-line format)
        signal.signal(signal.SIGINT, sigint)
    return subprocess.CompletedProcess(argv, code, out.getvalue(), err.getvalue())


def _print_warning(message: Warning | str, category: type[Warning], filename: str,
                   lineno: int, file: object = None, line: str | None = None) -> None:
    """Python's own showwarning, to the stderr of the moment (the redirected one)."""
    sys.stderr.write(warnings.formatwarning(message, category, filename, lineno, line))


def fake_torch(raw_stream: int | Callable[[], int] = 0,
               initialized: bool = False) -> types.ModuleType:
    """The one stand-in for PyTorch in this process's tests: what gpuwatch reads of torch, no
    more. (Programs run in a subprocess import tests/programs/standins/torch instead.)

    - `cuda.is_initialized()`: `initialized` (a program starting CUDA later: set
      `cuda._initialized = True`);
    - `_C._cuda_getCurrentRawStream(device)`: `raw_stream`, or what it returns if callable (a
      stream that changes); the devices asked, in order, in `asked`;
    - `cuda.nvtx.range_push(msg)` / `range_pop()`: the depth, as torch returns it (the open
      ranges in `cuda.nvtx.stack`);
    - `nn.Module`, its call defined on the class as torch defines it (`_wrapped_call_impl`),
      and `Net`: two layers (x + 1 each), times `scale`; a negative input raises."""

    class Module:
        def _wrapped_call_impl(self, *args, **kwargs):
            return self.forward(*args, **kwargs)

        __call__ = _wrapped_call_impl

    class Layer(Module):
        def forward(self, x):
            return x + 1

    class Net(Module):
        def __init__(self):
            self.a, self.b = Layer(), Layer()

        def forward(self, x, scale=1):
            if x < 0:
                raise ValueError("negative input")
            return self.b(self.a(x)) * scale

    stack: list[str] = []

    def range_push(msg):
        stack.append(msg)
        return len(stack) - 1

    def range_pop():
        stack.pop()
        return len(stack)

    asked: list[int] = []

    def raw(device: int) -> int:
        asked.append(device)
        return raw_stream() if callable(raw_stream) else raw_stream

    torch = types.ModuleType("torch")
    cuda = types.ModuleType("torch.cuda")
    cuda._initialized = initialized  # type: ignore[attr-defined]
    cuda.is_initialized = lambda: cuda._initialized  # type: ignore[attr-defined]
    cuda.nvtx = types.SimpleNamespace(range_push=range_push,  # type: ignore[attr-defined]
                                      range_pop=range_pop, stack=stack)
    torch.cuda = cuda  # type: ignore[attr-defined]
    torch._C = types.SimpleNamespace(_cuda_getCurrentRawStream=raw)  # type: ignore[attr-defined]
    torch.asked = asked  # type: ignore[attr-defined]
    torch.nn = types.SimpleNamespace(Module=Module)  # type: ignore[attr-defined]
    torch.Net = Net  # type: ignore[attr-defined]
    return torch


_ANALYSED: dict[str, object] = {}


def analysed(path: str | os.PathLike[str]):  # -> gpuwatch.Analysis
    """`gpuwatch.analyze(path)` of a committed fixture, once per test process: several test
    files read the same real trace's analysis (a few seconds each). Read it, never change it."""
    import gpuwatch

    key = os.path.realpath(path)
    if key not in _ANALYSED:
        _ANALYSED[key] = gpuwatch.analyze(path)
    return _ANALYSED[key]


def record_sim(out: str | os.PathLike[str], profile: str = "t4",
               gaps: tuple[float, ...] = (0.0, 20.0), iters: int = 800, warmup: int = 20,
               seed: int = 0, engine: str = "builtin:small", sample_hz: float = 1000.0,
               **options: object):  # -> gpuwatch.Trace
    """What `python -m gpuwatch.record` does, through the public API: on a simulated GPU, per
    gap a condition of `warmup` marked iterations then `iters` measured ones, each followed
    by the gap. `options`: the session's other arguments (kernels, probe, sampler...). The
    tests' one recording loop."""
    import gpuwatch

    with gpuwatch.session(f"sim:{profile}", out, seed=seed, sample_hz=sample_hz,
                          **options) as s:  # type: ignore[arg-type]
        e = s.engine(engine)
        for gap in gaps:
            s.set_condition(f"gap={gap:g}ms", gap_ms=gap)
            s.warmup, s.iteration = True, -warmup
            for _ in range(warmup):
                e.infer()
                e.synchronize()
            s.warmup = False
            for _ in range(iters):
                e.infer()
                e.synchronize()  # the program waits for its result, then idles
                if gap:
                    s.wait(gap)
    return s.trace


# A real H100 trace (schema v2), small: the base of the damaged and copied traces tests make
H100_FIXTURE = Path(__file__).resolve().parent / "data" / "h100_small_gap0_20_fixture.parquet"


def table_kinds(tbl):  # (pa.Table) -> pa.ChunkedArray
    """Each row's table name in a whole trace file read with pyarrow (a schema v2 trace's
    column is `table`, later ones' `table_name`)."""
    import pyarrow as pa

    from gpuwatch.trace import KIND, LEGACY_KIND

    return tbl[KIND if KIND in tbl.column_names else LEGACY_KIND].cast(pa.string())


def with_inferences(path: str | os.PathLike[str], whole, extra) -> None:
    """Write the trace `whole` (a pa.Table of a trace file), then `extra` inference rows, in
    row groups of one table each, as gpuwatch writes them."""
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    from gpuwatch.trace import ROW_GROUP_ROWS

    kinds = table_kinds(whole)
    with pq.ParquetWriter(path, whole.schema) as w:
        for table in pc.unique(kinds).to_pylist():
            w.write_table(whole.filter(pc.equal(kinds, table)), row_group_size=ROW_GROUP_ROWS)
        w.write_table(extra, row_group_size=ROW_GROUP_ROWS)
