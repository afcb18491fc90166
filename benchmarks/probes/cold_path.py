"""What pieces of host code cost right after an idle gap (cold caches), on the GPU machine.

Each round sleeps `--gap-ms`, then times one piece with two perf_counter_ns reads; pieces take
turns round by round (every piece sees the same conditions). The telemetry sampler runs
(1 kHz, its own process), as in a recording. Reported: the median and IQR per piece, in us.

    python benchmarks/probes/cold_path.py --out DIR [--gap-ms 20] [--rounds 150]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

import gpuwatch
from gpuwatch import streams


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--gap-ms", type=float, default=20.0)
    ap.add_argument("--rounds", type=int, default=150)
    a = ap.parse_args()
    import torch

    a.out.mkdir(parents=True, exist_ok=True)
    x = torch.zeros(16, device="cuda")
    stream = torch.cuda.current_stream()
    e0 = torch.cuda.Event(enable_timing=True)
    raw = torch._C._cuda_getCurrentRawStream

    def noop(v: Any) -> Any:
        return v

    results: dict[str, list[float]] = {}
    with gpuwatch.session(out=a.out / "cold.parquet", sample_hz=1000, overwrite=True) as s:
        for _ in range(50):
            s.infer(noop, x)
        s.synchronize()
        timer = s._timer
        assert timer is not None
        fast = timer.fast  # the C timed path (regions/_native.c FastRegion), as s.infer calls it
        labels = ("cold", None, 0, False, None)

        pieces: dict[str, Callable[[], Any]] = {
            "nothing": lambda: None,
            "python noop(x)": lambda: noop(x),
            "torch raw current stream": lambda: raw(0),
            "gpuwatch streams.current": lambda: streams.current(0),
            "torch Event.record": lambda: e0.record(stream),
            "C timed region(noop)": lambda: fast("inference", "noop", labels, noop, (x,), None,
                                                 None, None),
            "s.infer(noop)": lambda: s.infer(noop, x),
            "x.add_(1) (one launch)": lambda: x.add_(1),
        }
        clk = time.perf_counter_ns
        for r in range(a.rounds):
            for name, f in pieces.items():
                time.sleep(a.gap_ms / 1e3)
                t0 = clk()
                f()
                t1 = clk()
                results.setdefault(name, []).append((t1 - t0) / 1e3)
                if name == "s.infer(noop)" and r % 8 == 7:
                    s.synchronize()  # (outside the timing: keep the event pool from wrapping)
            torch.cuda.synchronize()
    res = {"gpu": torch.cuda.get_device_name(), "gap_ms": a.gap_ms, "rounds": a.rounds,
           "us": {k: {"p25": round(float(np.percentile(v, 25)), 2),
                      "p50": round(float(np.median(v)), 2),
                      "p75": round(float(np.percentile(v, 75)), 2)} for k, v in results.items()}}
    print(json.dumps(res, indent=1))
    (a.out / "cold_path.json").write_text(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
