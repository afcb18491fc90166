"""`gpuwatch run [options] app.py [args...]` / `gpuwatch run [options] -m pkg.mod [args...]`:
an unmodified program, recorded and explained.

The program runs in this process as `python app.py` would run it (sys.argv, `__main__`,
`__file__`, sys.path[0]; its exit status and exceptions passed through, its stdout left to it),
inside a session whose sampler runs in its own process. Inferences are found by
gpuwatch.autoregions. The trace is kept whatever the program does (an exception, sys.exit,
Ctrl-C, SIGTERM); gpuwatch's report goes to stderr, the program's output stays on stdout.
"""

from __future__ import annotations

import argparse
import os
import runpy
import sys
import traceback
from pathlib import Path
from typing import Any

from . import add_probe_options, check_probe_options
from .._version import install_hint
from ..autoregions import AutoRegions
from ..backends import DEVICE_HELP
from ..errors import Terminated, UsageError, described
from ..kernelregions import BURST_GAP_MS, SYNC_GAP_MS, KernelBursts
from ..recorder import Session
from ..trace import default_out

SOURCES = {"auto": ("nvtx", "call"), "nvtx": ("nvtx",), "calls": ("call",), "kernels": ()}


# A program under `run` does its own GPU work; a simulated GPU cannot see it
SIM_WARNING = ("a simulated GPU cannot see your program's GPU work: its regions are timed on "
               "the simulator's clock, so their latencies and verdicts say nothing about the "
               "program; use a real GPU (--device auto), or the stand-in (--device standin) to "
               "try the code path")


class RunCommand:
    name = "run"
    description = ("Run a Python program unmodified, time the inferences it runs (NVTX ranges "
                   "it marks, else its top-level torch module and TensorRT calls, else, with "
                   "--kernels, bursts of its kernels) with the GPU's telemetry beside them, and "
                   "explain its latency.")

    def prepare_parser(self, p: argparse.ArgumentParser) -> None:
        p.add_argument("-m", dest="module", metavar="MODULE", default=None,
                       help="run a module as `python -m MODULE` does")
        p.add_argument("--device", default=None,  # (None: the session reads $GPUWATCH_DEVICE)
                       help=f"GPU to record: {DEVICE_HELP} (default: $GPUWATCH_DEVICE, else auto)")
        p.add_argument("--regions", choices=("auto", "nvtx", "calls", "kernels"),
                       default="auto",
                       help="where inferences come from: NVTX ranges, top-level torch module "
                            "and TensorRT calls, bursts of kernels (implies --kernels), or auto: "
                            "the outermost NVTX range or call, else (with --kernels) bursts")
        p.add_argument("--kernels", action="store_true",
                       help="also record every kernel and copy with CUPTI, which needs "
                            f"cupti-python: {install_hint('cupti')}")
        p.add_argument("--burst-gap-ms", type=float, default=None, metavar="MS",
                       help="kernel bursts end where the program waits for the GPU, or where "
                            "the GPU sits idle longer than this (default "
                            f"{BURST_GAP_MS:g}; {SYNC_GAP_MS:g} when the program synchronises)")
        p.add_argument("-o", "--out", default=None, help="the trace (default: "
                       "gpuwatch-DATE-TIME.parquet)")
        p.add_argument("-f", "--force", action="store_true",
                       help="replace --out and --html if they exist")
        p.add_argument("--dataset", metavar="DIR", default=None,
                       help="write into a fleet dataset instead: "
                            "DIR/host=H/gpu_model=M/run=R/trace.parquet")
        p.add_argument("--sample-hz", type=float, default=1000.0, help="telemetry rate")
        add_probe_options(p, "regions found")
        p.add_argument("-q", "--quiet", action="store_true",
                       help="no report at the end (--json and --html are still written)")
        p.add_argument("--json", action="store_true",
                       help="the report as JSON, on stderr after the program's own stderr")
        p.add_argument("--html", metavar="FILE", help="also write the HTML report")
        p.add_argument("program", nargs=argparse.REMAINDER,
                       help="the script and its arguments (or, with -m, the module's arguments)")

    @staticmethod
    def split_argv(argv: list[str], parser: argparse.ArgumentParser) -> list[str]:
        """gpuwatch's options, then `--` and the program's own: everything after the module
        of `-m MODULE` (as `python -m MODULE --x 1` passes `--x 1` on), or after the script.
        Which options take a value is the parser's to say (a list kept here by hand missed
        --probe-every, whose value was then taken for the script)."""
        with_value = {s for a in parser._actions if a.nargs != 0 for s in a.option_strings}
        i = 0
        while i < len(argv):
            a = argv[i]
            if a == "--":
                return argv
            if a == "-m":
                return argv[:i + 2] + ["--"] + argv[i + 2:] if i + 2 < len(argv) else argv
            if a.startswith("-m") and len(a) > 2:  # -mpkg.mod
                return argv[:i + 1] + ["--"] + argv[i + 1:] if i + 1 < len(argv) else argv
            if not a.startswith("-"):  # the script: the rest is its own
                return argv[:i] + ["--"] + argv[i:]
            i += 2 if a in with_value else 1
        return argv

    def run(self, args: argparse.Namespace) -> int:
        check_probe_options(args)
        argv = list(args.program)
        if argv[:1] == ["--"]:
            argv = argv[1:]
        if args.burst_gap_ms is not None and not 0 < args.burst_gap_ms < 1e6:
            raise UsageError(f"--burst-gap-ms takes a time in ms, > 0 and finite, got "
                             f"{args.burst_gap_ms:g}")
        from .reports import check_reports

        # (before the program runs: a refusal after it would cost the whole run)
        check_reports({"--html": args.html}, args.force,
                      inputs=[args.out] if args.out and not args.dataset else [])
        if args.module is not None:
            _check_module(args.module)
        if args.module is None:
            if not argv:
                raise UsageError("give the program to run: gpuwatch run app.py [args...] (or "
                                 "-m package.module)")
            script = Path(argv[0])
            if not (script.is_file() or (script / "__main__.py").is_file()):
                raise UsageError(f"no program at {script}; give a Python file, a directory "
                                 f"with a __main__.py (or -m MODULE)")
        if args.out and args.dataset:
            raise UsageError("give either --out or --dataset, not both")
        kernels = args.kernels or args.regions == "kernels"
        out = None if args.dataset else (args.out or str(default_out()))
        options = {"command": "run", "program": (["-m", args.module] if args.module else [])
                   + argv, "regions": args.regions, "kernels": kernels,
                   "conditions": "observed gaps"}
        session = Session(args.device, out, dataset=args.dataset, sample_hz=args.sample_hz,
                          options=options, overwrite=args.force, kernels=kernels,
                          probe=args.probe, probe_every_ms=args.probe_every)
        session.keep_empty = False  # (a run that timed nothing leaves no trace to block the next)
        regions = AutoRegions(session, SOURCES[args.regions])
        if kernels:
            _find_bursts(session, regions, args.burst_gap_ms,
                         only_if_nothing_else=args.regions == "auto")
        status, code, error = "complete", 0, None
        raised: BaseException | None = None
        session.start()
        if str(session.device_spec).startswith("sim"):  # (issue 29: say it before, and after;
            # -q and --json keep the program's stderr its own: the trace, the report's header
            # and the JSON's status carry it)
            if not (args.quiet or args.json):
                print(f"gpuwatch: warning: {SIM_WARNING}", file=sys.stderr)
            session.annotate(warning=SIM_WARNING)
        own_stderr = _dup_stderr()  # (the program may close or replace its stderr)
        regions.install()
        try:
            code, error, raised = _run_program(args.module, argv)
            if error is not None:  # the program raised: recorded as a failed block is
                status = "failed"
                session.annotate(failed_by="program")
        except (KeyboardInterrupt, Terminated) as e:  # Ctrl-C, SIGTERM: the trace is kept
            status, code = "interrupted", 128 + e.signum if isinstance(e, Terminated) else 130
            raised = e
            if isinstance(e, KeyboardInterrupt):  # (as python prints it; SIGTERM: silent)
                _print_program_traceback(e)
        finally:
            session.prepare_close()  # (a Ctrl-C from here on waits for the trace)
            _reopen_stderr(own_stderr)
            try:
                regions.uninstall()
                # a region the program left open (it ended, raised or was stopped inside it),
                # however deeply nested: its row says why
                regions.close_open(raised)
                session.annotate(regions_found=dict(regions.counts),
                                 region_hooks=regions.installed,
                                 regions_not_timed_other_thread=regions.concurrent,
                                 program_exit_status=code)
            finally:  # (whatever stopped the tidying, the trace is closed)
                path = session.close(status=status, error=error)
        if os.getpid() != session._pid:  # a child the program forked ran to its end: the
            return code  # trace and the report are the parent's
        found = sum(regions.counts.values())
        if args.quiet and status == "interrupted" and not session.discarded:
            # (-q prints no report, but a run cut short says where its trace is, as record
            # -q does: the program's stderr would otherwise end with no word of it)
            what = "terminated" if isinstance(raised, Terminated) else "interrupted"
            print(f"gpuwatch: {what}: what was recorded is in {path}", file=sys.stderr)
        if not args.quiet or args.html or args.json:  # (-q: no text report)
            try:
                written = self._report(path, found, regions, args,
                             {"trace": None if session.discarded else str(path),
                              "status": status,
                              "program_exit_status": code, "program_error": error,
                              "regions_found": dict(regions.counts),
                              "regions_not_timed_other_thread": regions.concurrent,
                              # (also where no trace was kept to carry it)
                              **({"warning": SIM_WARNING} if str(session.device_spec)
                                 .startswith("sim") else {})})
            except Exception as e:  # the program's status stands; the trace is on disk
                print(f"gpuwatch: could not analyse {path} ({type(e).__name__}: {e}); try "
                      f"python -m gpuwatch.analyze {path}", file=sys.stderr)
            else:  # (a program that succeeded, but the report asked for is missing: 1)
                if not written and code == 0:
                    return 1
        return code

    def _report(self, path: Path, found: int, regions: AutoRegions,
                args: argparse.Namespace, run: dict[str, Any]) -> bool:
        """The report on stderr (text, or with --json the analysis and `run`: the run's own
        facts) and the --html file; False where the --html file could not be written."""
        import json

        err, text = sys.stderr, not args.quiet and not args.json
        if run["trace"] is None and run["status"] == "interrupted" and not path.exists():
            # stopped before anything was timed: the session said so, and there is nothing
            # to count or analyse (no advice about NVTX ranges the program never reached)
            if args.json:
                _write_json(err, {"run": run})
            return True
        if text:
            # (none written: the session's own line just before says why)
            where = path if run["trace"] is not None else f"none written ({path} is the one " \
                f"that was there)" if path.exists() else "none written"
            print(f"\ngpuwatch: {found} inference(s) found "
                  f"({', '.join(f'{k}: {v}' for k, v in regions.counts.items())}); trace: {where}",
                  file=err)
            if regions.concurrent:
                print(f"gpuwatch: {regions.concurrent} range(s) or call(s) of another thread "
                      f"ran while a region was open: not timed (one region at a time)",
                      file=err)
        if not found:
            looked = {"nvtx": "marked no NVTX range", "call": "called no torch module or "
                      "TensorRT context", "kernels": "ran no kernels (or none were traced)"}
            if run["program_error"] is not None:
                why = f"the program raised ({run['program_error']}) before any inference"
            else:
                why = "the program " + " and ".join(looked[k] for k in regions.counts)
                if args.regions != "auto":
                    why += "; --regions auto looks for NVTX ranges and calls"
                elif "kernels" not in regions.counts:
                    why += "; with --kernels, bursts of its kernels would be"
            line = f"nothing to analyse: {why}"
            if args.json:
                _write_json(err, {"run": run, "nothing_to_analyse": why})
            elif text or args.html:
                print(f"gpuwatch: {line}{'; no HTML written' if args.html else ''} (see "
                      f"docs/guide.md, 'Profile a program you did not write for gpuwatch')", file=err)
            return True
        from ..analysis.pipeline import analyze
        from ..renderers import HtmlRenderer, JsonRenderer, TextRenderer

        a = analyze(path)
        per_name = a.traces[0].inferences["name"].value_counts() if a.traces else None
        notes = []
        if per_name is not None and len(per_name) > 20 and per_name.median() < 3:
            notes.append(f"{len(per_name)} region names, most seen once or twice (e.g. "
                         f"{per_name.index[-1]!r}): a name that changes every iteration (an "
                         f"f-string with a counter) makes a series of each; mark the work with "
                         f"one name")
        if text:
            for note in notes:
                print(f"gpuwatch: {note}", file=err)
        written = True
        if args.html:
            try:
                HtmlRenderer().write(a, args.html)
            except OSError as e:  # (a full disk: checked writable before the program ran)
                written = False
                print(f"gpuwatch: could not write the HTML report {args.html}: "
                      f"{e.strerror or e}; the trace is {path} (python -m gpuwatch.analyze "
                      f"{path} --html FILE writes it)", file=err)
        if args.json:
            _write_json(err, {"run": {**run, "notes": notes},
                              **json.loads(JsonRenderer().render(a))})
        elif text:
            err.write(TextRenderer().render(a))
        return written


def _write_json(err: Any, doc: dict[str, Any]) -> None:
    """--json: the report as one line, the last of stderr (after a newline: the program's own
    stderr may not end with one)."""
    import json

    err.write("\n" + json.dumps(doc, default=str) + "\n")


def _find_bursts(session: Session, regions: AutoRegions, gap_ms: float | None,
                 only_if_nothing_else: bool) -> None:
    """Keep the kernel records' intervals as they arrive; at close, make the bursts into
    regions (under --regions auto, only if no other source found any)."""
    found = KernelBursts(gap_ms)
    session._kernel_tap = found.tap
    regions.counts["kernels"] = 0

    def finish(add: Any, first_region_id: int) -> dict[str, Any]:
        if only_if_nothing_else and any(v for k, v in regions.counts.items() if k != "kernels"):
            return {"kernel_bursts": {"records": len(found), "bursts": None,
                                      "why_none": "other sources found the inferences"}}
        cols = found.rows(first_region_id)
        if cols:
            add("inferences", cols)
        regions.counts["kernels"] = len(cols.get("t_ns", ()))
        return {"kernel_bursts": found.summary(cols), "regions_found": dict(regions.counts)}

    session._on_close.append(finish)


def _check_module(module: str) -> None:
    """A usage error, before anything starts, if `python -m module` could not find it."""
    import importlib.util

    sys.path.insert(0, os.getcwd())
    try:
        spec = importlib.util.find_spec(module)
    except (ImportError, ValueError) as e:
        raise UsageError(f"no module {module} to run ({type(e).__name__}: {e})") from None
    finally:
        sys.path.pop(0)
    if spec is None:
        raise UsageError(f"no module named {module} (from {os.getcwd()}); give an importable "
                         f"module, as python -m takes")


def _run_program(module: str | None,
                 argv: list[str]) -> tuple[int, str | None, BaseException | None]:
    """The program, as `python [-m module] argv...` would run it: its exit status, and the
    exception it raised, if any (as text, and itself; a SystemExit with a nonzero status is
    returned too, as no error text: a region left open says it was stopped by it)."""
    saved_argv = sys.argv[:]
    # sys.path[0] is the program's, as python sets it: the working directory for -m, the
    # script's directory for a script (not in addition to gpuwatch's own first entry)
    path0 = os.getcwd() if module is not None else os.path.dirname(os.path.abspath(argv[0]))
    if module is None and os.path.isdir(argv[0]):  # (runpy puts the directory first itself)
        path0 = os.path.abspath(argv[0])
    saved_path0 = sys.path[0] if sys.path else None
    if sys.path:
        sys.path[0] = path0
    else:
        sys.path.append(path0)
    try:
        if module is not None:
            sys.argv = [module, *argv]
            runpy.run_module(module, run_name="__main__", alter_sys=True)
        elif os.path.isdir(argv[0]):  # a directory with a __main__.py: runpy, as python does
            sys.argv = [argv[0], *argv[1:]]
            del sys.path[0]  # (run_path inserts the directory, absolute, as python does;
            try:  # sys.argv[0] is then that path too)
                runpy.run_path(path0, run_name="__main__")
            finally:
                sys.path.insert(0, path0)  # (for the restore below: run_path took it out)
        else:
            _run_script(argv)
        return 0, None, None
    except (KeyboardInterrupt, Terminated):
        raise
    except SystemExit as e:
        code = _exit_code(e.code)
        return code, None, (e if code else None)
    except BaseException as e:  # as the interpreter would: the traceback, status 1
        _print_program_traceback(e)
        return 1, described(e), e
    finally:
        sys.argv = saved_argv
        if sys.path and sys.path[0] == path0:
            if saved_path0 is None:
                sys.path.pop(0)
            else:
                sys.path[0] = saved_path0


def _run_script(argv: list[str]) -> None:
    """Run the script argv[0] as `python argv[0]` sets up its main module: sys.argv as typed,
    __file__ absolute (Python 3.9+), a module `__main__` in sys.modules while it runs (what
    pickling and multiprocessing's spawn look up). (runpy.run_path would make argv[0] the
    absolute path.)"""
    import importlib.machinery
    import io
    import types

    path = os.path.abspath(argv[0])
    with io.open_code(path) as f:
        code = compile(f.read(), path, "exec", dont_inherit=True)
    main = types.ModuleType("__main__")
    main.__file__ = path
    main.__loader__ = importlib.machinery.SourceFileLoader("__main__", path)
    setattr(main, "__cached__", None)
    saved_main = sys.modules.get("__main__")
    sys.modules["__main__"] = main
    sys.argv = [argv[0], *argv[1:]]
    try:
        exec(code, main.__dict__)
    finally:
        if saved_main is not None:
            sys.modules["__main__"] = saved_main


def _print_program_traceback(e: BaseException) -> None:
    """The traceback of the program's exception, without gpuwatch's frames before its own;
    for a Ctrl-C, without gpuwatch's after them either (its SIGINT handler raised it, where
    python raises it from C: no frame)."""
    tb = e.__traceback__
    while tb is not None and _ours(tb.tb_frame.f_code.co_filename):
        tb = tb.tb_next
    if not isinstance(e, KeyboardInterrupt):
        traceback.print_exception(type(e), e, tb, file=sys.stderr)
        return
    frames = traceback.extract_tb(tb)
    package = os.path.dirname(os.path.dirname(os.path.abspath(__file__))) + os.sep
    while frames and frames[-1].filename.startswith(package):
        frames.pop()
    lines = (["Traceback (most recent call last):\n", *traceback.format_list(frames)]
             if frames else [])
    sys.stderr.write("".join(lines + traceback.format_exception_only(type(e), e)))


def _ours(filename: str) -> bool:
    return "runpy" in filename or filename == __file__ or filename == "<frozen runpy>"


def _dup_stderr() -> Any:
    """A stream of our own on the process's stderr (a duplicate of fd 2), for gpuwatch's
    report after a program that closed sys.stderr or fd 2, or set sys.stderr to None (print
    would then write the report into the program's stdout). None if fd 2 is not open."""
    try:
        fd = os.dup(2)
    except OSError:
        return None
    enc = getattr(sys.stderr, "encoding", None) or "utf-8"
    return os.fdopen(fd, "w", buffering=1, encoding=enc, errors="backslashreplace")


def _reopen_stderr(own: Any) -> None:
    """After the program: if it left sys.stderr unusable (None, closed, or its fd closed),
    gpuwatch's messages go to `own` instead, as they would have gone before."""
    if own is None:
        return
    err = sys.stderr
    try:
        usable = err is not None and not err.closed and os.fstat(err.fileno()) is not None
    except (OSError, ValueError, AttributeError):
        usable = False
    if not usable:
        sys.stderr = own


def _exit_code(code: Any) -> int:
    """sys.exit's argument as the exit status: None 0, an int itself, anything else printed
    and 1 (as the interpreter does)."""
    if code is None:
        return 0
    if isinstance(code, int):
        return code
    print(code, file=sys.stderr)
    return 1

