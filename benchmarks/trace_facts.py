"""Print what a trace's raw tables hold, for checking a recording by eye: the processes table
(who else was on the GPU), the sampler's host fields, the clock and its reasons, and latency over
time in tenths of the run.   python3 benchmarks/trace_facts.py TRACE.parquet [...]"""

from __future__ import annotations

import sys

import numpy as np
import pandas as pd

import gpuwatch


def facts(path: str) -> None:
    t = gpuwatch.load(path)
    print(f"== {path}")
    p = t.processes
    if len(p):
        g = p.groupby(["pid", "own"], dropna=False).agg(
            n=("t_ns", "size"), sm_p50=("sm_util_pct", "median"), sm_max=("sm_util_pct", "max"),
            mem_p50=("mem_util_pct", "median"), mib=("used_mib", "max"))
        print("processes:\n" + g.to_string())
    else:
        print("processes: none recorded")
    s = t.samples
    host = [c for c in s.columns if c.startswith("host_")]
    if len(s):
        print("samples:", len(s), "rows;",
              s[["sm_clock_mhz", "power_w", "gpu_util_pct"] + host].describe()
              .loc[["count", "50%", "max"]].round(1).to_string())
        reasons = s["clock_event_reasons"].dropna().astype(int).value_counts()
        print("clock_event_reasons:", dict(reasons))
    inf = t.measured().sort_values("host_start_ns")
    for cond, d in inf.groupby("condition", sort=False):
        edges = np.linspace(0, len(d), 11).astype(int)
        parts = [d.iloc[a:b] for a, b in zip(edges[:-1], edges[1:])]
        cols = {"gpu_ms": [x["gpu_ms"].median() for x in parts],
                "wall_ms": [((x["host_end_ns"] - x["host_start_ns"]) / 1e6).median() for x in parts]}
        if "sm_clock_inband_mhz" in d:
            cols["inband"] = [x["sm_clock_inband_mhz"].median() for x in parts]
        print(f"{cond} ({len(d)}) by tenths:\n" + pd.DataFrame(cols).T.round(2).to_string())


if __name__ == "__main__":
    for a in sys.argv[1:]:
        facts(a)
