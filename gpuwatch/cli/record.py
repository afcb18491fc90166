"""The `record` command: inference with a fixed idle gap per condition, one trace for the run."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import WRITTEN, add_probe_options, check_probe_options, loading
from ..backends import BINDINGS, DEVICE_HELP_ENGINES
from ..engines import check_spec
from ..errors import Terminated, UsageError
from ..recorder import MAX_SAMPLE_HZ, SAMPLER_MODES, Session
from ..trace import default_out, load, partial_path
from ..trace.paths import file_identity
from ..bindings.tensorrt import PRECISIONS  # imports no TensorRT until an engine is made


MAX_GAP_MS = 3_600_000.0  # an hour: longer gaps are separate recordings


def _items(text: str, option: str, example: str = "0,5,20") -> list[str]:
    """A comma list's items; an empty one (`1,,2`, a trailing comma) is a typo, not a skip."""
    items = [x.strip() for x in text.split(",")]
    if len(items) > 1 and not all(items):
        raise argparse.ArgumentTypeError(
            f"{option} has an empty item in {text!r}: separate values with single commas "
            f"(e.g. {example})")
    return [x for x in items if x]


def _gaps(text: str) -> list[float]:
    try:
        gaps = [float(x) for x in _items(text, "--gap")]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"--gap takes milliseconds, or a comma list for a sweep (e.g. 0,5,20), not {text!r}"
        ) from None
    if not gaps:
        raise argparse.ArgumentTypeError("--gap needs at least one value, e.g. --gap 20")
    if any(not 0 <= g <= MAX_GAP_MS for g in gaps):  # (NaN fails this too)
        raise argparse.ArgumentTypeError(
            f"--gap values must be 0..{MAX_GAP_MS:.0f} ms (an hour), got {text!r}")
    if len(set(gaps)) != len(gaps):
        raise argparse.ArgumentTypeError(
            f"--gap lists a value twice ({text!r}): each gap is one condition; for more "
            f"iterations use --iters")
    return gaps


def _positive_int(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if v <= 0:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {v}")
    return v


def _non_negative_int(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if v < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {v}")
    return v


def _positive_float(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not 0 < v < float("inf"):
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text!r}")
    return v


def _sample_hz(text: str) -> float:
    v = _positive_float(text)
    if v > MAX_SAMPLE_HZ:
        raise argparse.ArgumentTypeError(f"must be at most {MAX_SAMPLE_HZ:g} Hz, got {text!r}")
    return v


def _fps(text: str) -> list[float]:
    try:
        rates = [float(x) for x in _items(text, "--fps")]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"--fps takes frames per second, or a comma list (e.g. 15,30), not {text!r}") from None
    if not rates or any(not 1000 / MAX_GAP_MS <= r <= 100_000 for r in rates):
        raise argparse.ArgumentTypeError(
            f"--fps values must be positive, from one frame an hour to 100000, got {text!r}")
    return rates


@dataclass(frozen=True)
class Condition:
    """How iterations are spaced: a fixed idle gap after each, or a frame rate to hold."""

    gap_ms: float | None = None
    fps: float | None = None

    @property
    def name(self) -> str:
        return f"fps={self.fps:g}" if self.fps else f"gap={self.gap_ms:g}ms"


class RecordCommand:
    name = "record"
    description = (
        "Run inference with an idle gap between iterations (one condition per gap) while "
        "sampling GPU telemetry, write a Parquet trace, and print latency per condition."
    )

    _out: Path | None = None  # where the running recording goes (known once it started)

    def prepare_parser(self, p: argparse.ArgumentParser) -> None:
        p.add_argument("--gap", type=_gaps, action="extend", default=None, metavar="MS[,MS...]",
                       help="idle gap between inferences in ms; a comma list (or the option "
                            "repeated) runs a sweep "
                            "(default: 20, unless --fps is given)")
        p.add_argument("--fps", type=_fps, action="extend", default=None, metavar="N[,N...]",
                       help="hold a frame rate instead (start an iteration every 1/N s, as a "
                            "video stream does); a comma list runs one condition each")
        p.add_argument("--iters", type=_positive_int, default=800,
                       help="measured iterations per condition (default: 800)")
        p.add_argument("--warmup", type=_non_negative_int, default=20,
                       help="back-to-back warm-up iterations before each condition (default: 20)")
        p.add_argument("--device", default=None,  # (None: the session reads $GPUWATCH_DEVICE)
                       help=f"GPU to use: {DEVICE_HELP_ENGINES} (default: $GPUWATCH_DEVICE, else auto)")
        p.add_argument("--engine", default="builtin:small",
                       help="what to run: builtin:small, builtin:large, builtin:tiny, or a "
                            "TensorRT engine file (.plan/.engine) (default: builtin:small)")
        p.add_argument("--onnx", metavar="FILE", default=None,
                       help="build a TensorRT engine from this ONNX model (saved beside it, "
                            "with a timing cache) and run that")
        p.add_argument("--precision", choices=PRECISIONS, default="fp16",
                       help="precision of the engine --onnx builds (default: fp16)")
        p.add_argument("--workspace-mb", type=_positive_int, default=1024,
                       help="TensorRT builder workspace for --onnx (default: 1024 MB)")
        p.add_argument("--binding", choices=BINDINGS, default="cuda",
                       help="CUDA library on a real GPU: cuda (cuda-python) or pycuda")
        p.add_argument("--torch", metavar="MODULE:FACTORY", default=None,
                       help="time a PyTorch model instead: FACTORY() returns (model, input); "
                            "e.g. gpuwatch.bindings.torch:convnet")
        p.add_argument("--cuda-graph", action="store_true",
                       help="launch each inference as one CUDA graph")
        p.add_argument("--kernels", action="store_true",
                       help="also record every kernel and copy (CUPTI; the cupti extra) and "
                            "split each inference into kernel time and GPU idle time")
        add_probe_options(p)
        p.add_argument("--pre-post", action="store_true",
                       help="also time the engine's pre-processing (host->device copy) and "
                            "post-processing (device->host copy) as spans")
        p.add_argument("--wait", choices=("sleep", "spin"), default="sleep",
                       help="how to idle during the gap: sleep (as time.sleep) or spin")
        p.add_argument("--keepalive", type=_positive_float, default=None, metavar="MS",
                       help="during each gap, give the GPU a trivial piece of work (a 4-byte "
                            "memset) every MS ms instead of leaving it idle")
        p.add_argument("--sample-hz", type=_sample_hz, default=1000.0,
                       help="telemetry sampling rate (default: 1000)")
        p.add_argument("--sampler", choices=SAMPLER_MODES, default="auto",
                       help="where the sampler runs: auto (a separate process on a real GPU), "
                            "thread, process, or off")
        p.add_argument("--sample-gpus", default=None, metavar="all|I,J",
                       help="GPUs to sample besides the one running inference: all, or NVML "
                            "indices")
        p.add_argument("-o", "--out", default=None,
                       help="trace file to write (default: gpuwatch-DATE-TIME.parquet); an "
                            "existing one is not replaced unless --force")
        p.add_argument("-f", "--force", action="store_true",
                       help="replace the --out trace if it exists")
        p.add_argument("--dataset", metavar="DIR", default=None,
                       help="write into a hive-partitioned fleet dataset instead: "
                            "DIR/host=H/gpu_model=M/run=R/trace.parquet")
        p.add_argument("--seed", type=int, default=0, help="random seed (simulated GPUs)")
        p.add_argument("-q", "--quiet", action="store_true",
                       help="print no progress or summary table (with --json: the JSON only)")
        p.add_argument("--json", action="store_true",
                       help="print the summary as JSON (trace path, one record per engine and "
                            "condition) instead of the table")

    def run(self, args: argparse.Namespace) -> int:
        if args.out is not None and not args.out.strip():
            raise UsageError("--out is empty; give a trace file name like run.parquet (or leave "
                             "--out out for gpuwatch-DATE-TIME.parquet)")
        if args.out and args.dataset:
            raise UsageError("give either --out or --dataset, not both")
        check_probe_options(args)
        out = args.out or str(default_out())
        for option, values in (("--gap", args.gap), ("--fps", args.fps)):
            if values and len(set(values)) != len(values):  # (--gap 20 --gap 0,20)
                given = ", ".join(f"{v:g}" for v in values)
                raise UsageError(f"{option} gives a value twice ({given}): each value is one "
                                 f"condition; for more iterations use --iters")
        conditions = [Condition(gap_ms=g) for g in (args.gap or [])]
        conditions += [Condition(fps=f) for f in (args.fps or [])]
        if not conditions:
            conditions = [Condition(gap_ms=20.0)]
        if args.torch is not None and args.onnx is not None:
            raise UsageError("give either --torch or --onnx, not both")
        engine_spec = (f"torch:{args.torch}" if args.torch is not None else  # ('' is an
                       f"onnx:{args.onnx}" if args.onnx is not None else args.engine)  # error)
        check_spec(engine_spec, args.device)  # (before anything is recorded or written)
        options = {"command": "record", "conditions": [c.name for c in conditions],
                   "gaps_ms": args.gap or [], "fps": args.fps or [], "iters": args.iters,
                   "warmup": args.warmup, "engine": engine_spec, "cuda_graph": args.cuda_graph,
                   "pre_post": args.pre_post, "wait": args.wait, "keepalive_ms": args.keepalive,
                   "binding": args.binding,
                   "precision": args.precision if args.onnx else None}
        progress = _Progress(enabled=not args.quiet and sys.stderr.isatty())
        before = file_identity(Path(out))  # (a file there already, -f: not this recording's)
        try:
            s = self._record(args, out, conditions, engine_spec, options, progress)
        except (KeyboardInterrupt, Terminated) as e:
            progress.done()
            what = "terminated" if isinstance(e, Terminated) else "interrupted"
            print(stopped_line(what, Path(self._out or out), before), file=sys.stderr)
            e.gpuwatch_said = True  # type: ignore[union-attr]  # (main: no second line)
            raise
        WRITTEN.append(str(s.out))
        if args.json or not args.quiet:
            # only what the summary needs: an hour at 1 kHz is millions of sample rows
            with loading():  # (pandas: not before)
                from ..summary import condition_summary, format_summary

            tr = load(s.out, columns={"samples": ["sm_clock_mhz"], "kernels": [],
                                      "driver_samples": [], "events": []})
            summary = condition_summary(tr)
            if args.json:
                print(json.dumps({"trace": str(s.out), "simulated": tr.simulated,
                                  "status": tr.meta.get("status"),
                                  "summary": json.loads(summary.to_json(orient="records"))},
                                 indent=1))
            else:
                print(format_summary(summary))
                sim = " (simulated GPU)" if tr.simulated else ""
                print(f"trace: {s.out}{sim}")
        return 0

    def _record(self, args: argparse.Namespace, out: str, conditions: list[Condition],
                engine_spec: str, options: dict[str, Any], progress: "_Progress") -> Session:
        with Session(args.device, None if args.dataset else out, dataset=args.dataset,
                     sample_hz=args.sample_hz, sampler=args.sampler,
                     sample_gpus=sample_gpus(args.sample_gpus), binding=args.binding,
                     kernels=args.kernels, seed=args.seed, options=options,
                     probe=args.probe, overwrite=args.force,
                     probe_every_ms=args.probe_every) as s:
            self._out = s.out
            engine = s.engine(engine_spec, cuda_graph=args.cuda_graph,
                              precision=args.precision, workspace_mb=args.workspace_mb)
            if args.pre_post and not hasattr(engine.raw, "preprocess"):
                raise UsageError(f"--pre-post needs an engine with pre/post steps; "
                                 f"{engine.name} has none (use a builtin engine)")

            def step() -> None:  # each stage waited for, as the field report's program did
                if args.pre_post:
                    engine.preprocess()
                    engine.synchronize()
                engine.infer()
                engine.synchronize()
                if args.pre_post:
                    engine.postprocess()
                    engine.synchronize()

            for cond in conditions:
                s.set_condition(cond.name, gap_ms=cond.gap_ms)
                s.warmup, s.iteration = True, -args.warmup
                for _ in range(args.warmup):
                    step()
                s.warmup = False
                period_ns = int(1e9 / cond.fps) if cond.fps else 0
                next_ns = s.clock.now_ns()
                for i in range(args.iters):
                    step()
                    progress.update(s, i + 1, args.iters)
                    if s.write_error is not None:  # the trace cannot grow: stop now
                        progress.done()
                        return s
                    if period_ns:  # hold the frame rate: wait for the next frame's arrival
                        next_ns += period_ns
                        late = s.clock.now_ns() - next_ns
                        if late < 0:
                            s.wait(-late / 1e6, args.wait, args.keepalive)
                    elif cond.gap_ms:
                        s.wait(cond.gap_ms, args.wait, args.keepalive)
                progress.done()
        return s


def sample_gpus(text: str | None) -> str | list[int] | None:
    """--sample-gpus (record's, and the notebook magic's): `all`, or NVML indices, each once."""
    if text is None or text == "all":
        return text
    bad = UsageError(f"--sample-gpus takes all or NVML indices (0, 1, ...) like 0,1, not "
                     f"{text!r}")
    try:
        indices = [int(x) for x in _items(text, "--sample-gpus", example="0,1")]
    except argparse.ArgumentTypeError as e:
        raise UsageError(str(e)) from None
    except ValueError:
        raise bad from None
    if not indices or any(i < 0 for i in indices):  # (--sample-gpus= : nothing given)
        raise bad
    twice = sorted({i for i in indices if indices.count(i) > 1})
    if twice:
        raise UsageError(f"--sample-gpus lists GPU {twice[0]} twice ({text!r}): name each once")
    return indices


def stopped_line(what: str, path: Path, before: tuple[int, int, int] | None) -> str:
    """What a recording stopped by a signal (`what`: interrupted, terminated) left: its
    unfinished recording, the trace it published at `path`, or nothing, where the file at
    `path` is still the one that was there before it began (`before`, file_identity's; -f)."""
    partial = partial_path(path)
    if partial.exists():  # the final file was not finished (a second Ctrl-C)
        return f"{what}: the recording is in {partial} (not finished)"
    if path.exists() and file_identity(path) != before:
        return f"{what}: what was recorded is in {path}"
    # (stopped before anything was timed: the session wrote nothing)
    return (f"{what}: nothing was timed; no trace was written"
            + (f" ({path} is as it was)" if before is not None else ""))


class _Progress:
    """One self-overwriting stderr line, at most 4 times a second, on a terminal only."""

    def __init__(self, enabled: bool):
        self.enabled, self._last = enabled, 0.0

    def update(self, s: Session, i: int, n: int) -> None:
        if not self.enabled:
            return
        now = time.monotonic()
        if now - self._last < 0.25 and i != n:
            return
        self._last = now
        last: Any = f"{s.last_ms:.2f} ms" if s.last_ms is not None else "-"
        clk = s.last_sm_clock_mhz
        sm = f"SM {clk:.0f} MHz" if clk is not None else ""
        sys.stderr.write(f"\r{s.condition}  {i}/{n}  last {last}  {sm}   ")
        sys.stderr.flush()

    def done(self) -> None:
        if self.enabled:
            sys.stderr.write("\n")


__all__ = ["RecordCommand", "UsageError"]
