"""Per trace: the kernel decomposition of inferences (median busy / idle inside / first-kernel
delay / kernel count, per engine and condition), how the event-timed windows line up with
CUPTI's kernel timestamps (two independent clocks), and the verdicts.

    python benchmarks/probes/kernel_check.py TRACE [TRACE...]
"""

from __future__ import annotations

import sys

import numpy as np

import gpuwatch
from gpuwatch.analysis.merge import merge


def main(paths: list[str]) -> None:
    for p in paths:
        tr = gpuwatch.load(p)
        print(f"== {p}  kernel_trace={tr.meta.get('kernel_trace')}")
        m = merge(tr)
        inf = m[(m["kind"] == "inference") & ~m["warmup"].astype(bool)]
        cols = ["gpu_ms", "busy_ms", "idle_inside_ms", "first_kernel_delay_ms", "kernel_count"]
        print(inf.groupby(["name", "condition"], sort=False)[cols].median().round(4).to_string())
        # Alignment: the first kernel of an inference should start just after its start event,
        # and the last end just before its end event. Both edges, in microseconds.
        k = tr.kernels.sort_values("start_ns")
        ks, ke = k["start_ns"].to_numpy(np.int64), k["end_ns"].to_numpy(np.int64)
        a, b = inf["start_ns"].to_numpy(np.int64), inf["end_ns"].to_numpy(np.int64)
        first = np.searchsorted(ks, a, side="left")
        last = np.searchsorted(ks, b, side="left") - 1
        ok = (first < len(ks)) & (last >= 0)
        lead = (ks[first[ok]] - a[ok]) / 1e3
        tail = (b[ok] - ke[last[ok]]) / 1e3
        print(f"   start event -> first kernel start, us: p5 {np.percentile(lead, 5):.1f} "
              f"p50 {np.median(lead):.1f} p95 {np.percentile(lead, 95):.1f}")
        print(f"   last kernel end -> end event, us:      p5 {np.percentile(tail, 5):.1f} "
              f"p50 {np.median(tail):.1f} p95 {np.percentile(tail, 95):.1f}")
        a_ = gpuwatch.analyze(tr)
        for s in a_.verdicts["sentence"]:
            print("   -", s)


if __name__ == "__main__":
    main(sys.argv[1:])
