"""What gpuwatch's trace writer costs the program's thread: a session on the stand-in device
(no GPU needed), `s.infer` of an empty call at ~1 kHz (a 1 ms sleep between calls), for DUR
seconds. About once a second the writer's thread converts the buffered rows to Arrow and writes
a chunk, holding the interpreter lock while it converts; the program's calls that overlap it
wait. Reported: the median call+sleep iteration, and per flush of the inferences chunk (the
first left out: imports) the longest iteration overlapping it and the flush's own time.

    python benchmarks/writer_stall.py [DUR_S] [--json OUT]

A/B: run it on two checkouts (or with gpuwatch/trace/writer.py swapped), alternating.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
import tempfile

import numpy as np


def main(dur_s: float) -> dict[str, object]:
    import gpuwatch
    from gpuwatch.trace import writer as w

    flushes: list[tuple[int, int]] = []
    orig = w.ChunkWriter._write_chunk

    def timed(self, table, rows, cols=()):  # type: ignore[no-untyped-def]
        t0 = time.perf_counter_ns()
        orig(self, table, rows, cols)
        if table == "inferences":
            flushes.append((t0, time.perf_counter_ns()))

    w.ChunkWriter._write_chunk = timed  # type: ignore[method-assign]
    with tempfile.TemporaryDirectory() as d:
        with gpuwatch.session("standin", Path(d) / "t.parquet", sampler="off") as s:
            its = []
            end = time.perf_counter() + dur_s
            while time.perf_counter() < end:
                t0 = time.perf_counter_ns()
                s.infer(lambda: None)
                time.sleep(0.001)
                its.append((t0, time.perf_counter_ns()))
    t = np.array(its)
    it_ms = (t[:, 1] - t[:, 0]) / 1e6
    over = []
    for a, b in flushes[1:]:
        hit = (t[:, 0] < b) & (t[:, 1] > a)
        if hit.any():
            over.append(float(it_ms[hit].max()))
    return {"dur_s": dur_s, "iterations": len(t), "median_iteration_ms": float(np.median(it_ms)),
            "flush_ms_median": float(np.median([(b - a) / 1e6 for a, b in flushes[1:]])),
            "longest_iteration_over_a_flush_ms_median": float(np.median(over)),
            "longest_iteration_over_each_flush_ms": [round(x, 2) for x in over],
            "p999_iteration_ms": float(np.percentile(it_ms, 99.9))}


if __name__ == "__main__":
    args = sys.argv[1:]
    out = None
    if "--json" in args:
        i = args.index("--json")
        out = args[i + 1]
        del args[i:i + 2]
    res = main(float(args[0]) if args else 12.0)
    print(json.dumps(res))
    if out:
        Path(out).write_text(json.dumps(res, indent=1))
