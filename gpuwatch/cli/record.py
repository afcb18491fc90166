"""The `record` command: inference with a fixed idle gap per condition, one trace for the run."""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any

from ..backends import DEVICE_HELP
from ..errors import UsageError
from ..recorder import Session
from ..summary import condition_summary, format_summary
from ..trace import default_out


def _gaps(text: str) -> list[float]:
    try:
        gaps = [float(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"--gap takes milliseconds, or a comma list for a sweep (e.g. 0,5,20), not {text!r}"
        ) from None
    if not gaps:
        raise argparse.ArgumentTypeError("--gap needs at least one value, e.g. --gap 20")
    if any(g < 0 or g != g or g == float("inf") for g in gaps):
        raise argparse.ArgumentTypeError(f"--gap values must be finite and >= 0 ms, got {text!r}")
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


class RecordCommand:
    name = "record"
    description = (
        "Run inference with an idle gap between iterations (one condition per gap) while "
        "sampling GPU telemetry, write a Parquet trace, and print latency per condition."
    )

    def prepare_parser(self, p: argparse.ArgumentParser) -> None:
        p.add_argument("--gap", type=_gaps, default=[20.0], metavar="MS[,MS...]",
                       help="idle gap between inferences in ms; a comma list runs a sweep "
                            "(default: 20)")
        p.add_argument("--iters", type=_positive_int, default=800,
                       help="measured iterations per condition (default: 800)")
        p.add_argument("--warmup", type=_non_negative_int, default=20,
                       help="back-to-back warm-up iterations before each condition (default: 20)")
        p.add_argument("--device", default="auto", help=f"GPU to use: {DEVICE_HELP}")
        p.add_argument("--engine", default="builtin:small",
                       help="what to run: builtin:small or builtin:large (default: builtin:small)")
        p.add_argument("--wait", choices=("sleep", "spin"), default="sleep",
                       help="how to idle during the gap: sleep (as time.sleep) or spin")
        p.add_argument("--sample-hz", type=_positive_float, default=1000.0,
                       help="telemetry sampling rate (default: 1000)")
        p.add_argument("--out", default=None,
                       help="trace file to write (default: gpuwatch-DATE-TIME.parquet)")
        p.add_argument("--seed", type=int, default=0, help="random seed (simulated GPUs)")
        p.add_argument("--quiet", action="store_true", help="print no progress or summary")

    def run(self, args: argparse.Namespace) -> int:
        out = args.out or str(default_out())
        options = {"command": "record", "gaps_ms": args.gap, "iters": args.iters,
                   "warmup": args.warmup, "engine": args.engine, "wait": args.wait}
        progress = _Progress(enabled=not args.quiet and sys.stderr.isatty())
        with Session(args.device, out, sample_hz=args.sample_hz, seed=args.seed,
                     options=options) as s:
            engine = s.engine(args.engine)
            for gap in args.gap:
                s.set_condition(f"gap={gap:g}ms", gap_ms=gap)
                s.warmup, s.iteration = True, -args.warmup
                for _ in range(args.warmup):
                    engine.infer()
                s.warmup = False
                for i in range(args.iters):
                    engine.infer()
                    progress.update(s, i + 1, args.iters)
                    if gap > 0:
                        s.wait(gap, args.wait)
                progress.done()
        if not args.quiet:
            print(format_summary(condition_summary(s.trace)))
            sim = " (simulated GPU)" if s.trace.simulated else ""
            print(f"trace: {out}{sim}")
        return 0


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
        sys.stderr.write(f"\r{s.condition}  {i}/{n}  last {last}   ")
        sys.stderr.flush()

    def done(self) -> None:
        if self.enabled:
            sys.stderr.write("\n")


__all__ = ["RecordCommand", "UsageError"]
