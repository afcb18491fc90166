"""The user's own number against gpuwatch's: each request's call -> result time as the user's
program timed it (CASE.latency.csv: end_ns, ms; written by the issue-27 programs) against the
wall latency gpuwatch gives the region that ends it (analysis.wall: the call to the host having
the result), matched by end time.

    python benchmarks/issue27/user_vs_wall.py DIR   # DIR holds CASE.parquet + CASE.latency.csv

Prints, per case: requests matched, the median and p99 of the user's latency and of gpuwatch's,
and the median and 1st-99th percentiles of (user - gpuwatch): what the user's timer adds around
the region (their own Python lines, the wrapper) or what gpuwatch's region leaves out.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd

import gpuwatch
from gpuwatch.analysis.merge import merge

MATCH_NS = 2_000_000  # a region ending within this before the user's timer stopped is its


def compare(trace: Path, log: Path) -> dict[str, float] | None:
    user = pd.read_csv(log)
    m = merge(gpuwatch.load(trace))
    m = m[(~m["warmup"].astype(bool)) & np.isfinite(m["wall_ms"].to_numpy(float))]
    # a request is timed by the outermost region: the span where the program has one
    if (m["kind"] == "span").any():
        m = m[m["kind"] == "span"]
    end = (m["host_start_ns"].to_numpy(float) + m["wall_ms"].to_numpy(float) * 1e6)
    order = np.argsort(end)
    end, wall = end[order], m["wall_ms"].to_numpy(float)[order]
    u_end, u_ms = user["end_ns"].to_numpy(float), user["ms"].to_numpy(float)
    i = np.searchsorted(end, u_end, side="right") - 1
    ok = (i >= 0) & (u_end - end[np.clip(i, 0, None)] <= MATCH_NS)
    if ok.sum() < 10:
        return None
    w, u = wall[i[ok]], u_ms[ok]
    d = u - w
    return {"matched": int(ok.sum()), "requests": len(user), "user_p50_ms": float(np.median(u)),
            "wall_p50_ms": float(np.median(w)), "user_p99_ms": float(np.percentile(u, 99)),
            "wall_p99_ms": float(np.percentile(w, 99)), "diff_p50_ms": float(np.median(d)),
            "diff_p1_ms": float(np.percentile(d, 1)), "diff_p99_ms": float(np.percentile(d, 99))}


def main(argv: list[str]) -> int:
    if len(argv) != 1 or not Path(argv[0]).is_dir():
        print("usage: user_vs_wall.py DIR (with CASE.parquet and CASE.latency.csv)", file=sys.stderr)
        return 2
    d = Path(argv[0])
    print("| case | matched/requests | user p50 | gpuwatch p50 | user p99 | gpuwatch p99 | "
          "user - gpuwatch p50 (p1..p99) ms |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for log in sorted(d.glob("*.latency.csv")):
        case = log.name[: -len(".latency.csv")]
        r = compare(d / f"{case}.parquet", log)
        if r is None:
            print(f"| {case} | no match | | | | | |")
            continue
        print(f"| {case} | {r['matched']}/{r['requests']} | {r['user_p50_ms']:.3f} | "
              f"{r['wall_p50_ms']:.3f} | {r['user_p99_ms']:.3f} | {r['wall_p99_ms']:.3f} | "
              f"{r['diff_p50_ms']:+.3f} ({r['diff_p1_ms']:+.3f}..{r['diff_p99_ms']:+.3f}) |")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
