"""Per-condition latency summary (what `record` prints): percentiles and the SM clock seen."""

from __future__ import annotations

import os

import numpy as np
import pandas as pd

from .errors import UsageError
from .trace import Trace, load

def condition_summary(trace: Trace | str | os.PathLike[str]) -> pd.DataFrame:
    """One row per engine (the inference's name) and condition, in recording order: latency
    p50/p90/p99 (CUDA-event ms) over the measured iterations, the SM clock at the middle of
    each inference (median, min, max), and the median of the last LATE_ITERS over the first
    EARLY_ITERS (>1 means it got slower). Two things timed per iteration are two rows.
    `trace`: a loaded Trace, or a trace's path."""
    # (here, not at the top: `import gpuwatch.summary` stays light; summary sits above the
    # analysis, whose conventions it shares)
    from .analysis.columns import (EARLY_ITERS, LATE_ITERS, MAX_LATENCY_MS, floats,
                                   stale_after_ns)

    if isinstance(trace, (str, os.PathLike)):
        trace = load(trace)
    elif not isinstance(trace, Trace):
        raise UsageError(f"condition_summary takes a Trace (gpuwatch.load(path)) or a trace's "
                         f"path, got {type(trace).__name__} {trace!r}")
    inf = trace.measured()
    cols = ["engine", "condition", "gap_ms", "n", "p50_ms", "p90_ms", "p99_ms", "sm_clock_p50_mhz",
            "sm_clock_min_mhz", "sm_clock_max_mhz", "early_p50_ms", "late_p50_ms", "late_over_early"]
    inf = inf.dropna(subset=["gpu_ms", "start_ns"])
    ms = inf["gpu_ms"].pipe(floats)  # (as analyze: a latency <= 0 or absurd is no measurement)
    inf = inf[np.isfinite(ms) & (ms > 0) & (ms <= MAX_LATENCY_MS)]
    if inf.empty:
        return pd.DataFrame(columns=cols)
    inf = inf.assign(mid_ns=(inf["start_ns"] + (inf["end_ns"] - inf["start_ns"]) // 2).astype("int64"))
    inf = inf.assign(gpu=inf["gpu"].astype("int64"), condition=inf["condition"].fillna(""),
                     name=inf["name"].fillna(""))
    s = trace.samples[["t_ns", "gpu", "sm_clock_mhz"]].dropna()
    s = s.assign(t_ns=s["t_ns"].astype("int64"), gpu=s["gpu"].astype("int64"),
                 sm_clock_mhz=s["sm_clock_mhz"].astype("float64"))
    # The clock an inference ran at is the latest sample before its middle, if that sample is
    # recent: after the GPU is lost or the field stops being supported, the last reading is
    # not the clock of every later inference (it read 1590 MHz where the clock was 765).
    merged = pd.merge_asof(inf.sort_values("mid_ns"), s.sort_values("t_ns"), left_on="mid_ns",
                           right_on="t_ns", by="gpu", direction="backward",
                           tolerance=stale_after_ns(trace.meta))
    rows = []
    for (name, cond), g in merged.groupby(["name", "condition"], sort=False):
        g = g.sort_values("iteration")
        lat = g["gpu_ms"].pipe(floats)
        clk = g["sm_clock_mhz"].dropna().pipe(floats)
        early = float(np.median(lat[:EARLY_ITERS]))
        late = float(np.median(lat[-LATE_ITERS:]))
        p50, p90, p99 = np.percentile(lat, [50, 90, 99])
        rows.append({
            "engine": name, "condition": cond, "gap_ms": g["gap_ms"].iloc[0], "n": len(lat),
            "p50_ms": p50, "p90_ms": p90, "p99_ms": p99,
            "sm_clock_p50_mhz": float(np.median(clk)) if clk.size else np.nan,
            "sm_clock_min_mhz": float(clk.min()) if clk.size else np.nan,
            "sm_clock_max_mhz": float(clk.max()) if clk.size else np.nan,
            "early_p50_ms": early, "late_p50_ms": late, "late_over_early": late / early,
        })
    order = inf.sort_values("t_ns", kind="stable")
    first_seen = {c: i for i, c in enumerate(dict.fromkeys(order["condition"]))}
    first_name = {c: i for i, c in enumerate(dict.fromkeys(order["name"]))}
    out = pd.DataFrame(rows, columns=cols)
    key = out["condition"].map(first_seen) * (len(first_name) + 1) + out["engine"].map(first_name)
    return out.iloc[np.argsort(key.to_numpy(), kind="stable")].reset_index(drop=True)


def format_summary(df: pd.DataFrame) -> str:
    """The summary as an aligned text table; columns as wide as their widest value (no name is
    cut), the engine column only where there is more than one."""
    from .analysis.columns import ms_text

    def clock(r: object) -> str:
        p50 = getattr(r, "sm_clock_p50_mhz")
        if np.isnan(p50):
            return "NA"
        return f"{p50:.0f} ({getattr(r, 'sm_clock_min_mhz'):.0f}-{getattr(r, 'sm_clock_max_mhz'):.0f})"

    table: list[list[str]] = [[str(r.engine), str(r.condition), str(r.n), ms_text(r.p50_ms),
                               ms_text(r.p90_ms), ms_text(r.p99_ms), clock(r),
                               f"{r.late_over_early:.2f}x"] for r in df.itertuples()]
    head = ["engine", "condition", "n", "p50 ms", "p90 ms", "p99 ms", "SM MHz p50 (min-max)",
            "late/early"]
    keep = [i for i in range(len(head)) if i != 0 or df["engine"].nunique() > 1]
    width = [max([len(head[i])] + [len(row[i]) for row in table]) for i in range(len(head))]
    left = {0, 1}  # names left-aligned, numbers right-aligned

    def line(cells: list[str]) -> str:
        return "  ".join(cells[i].ljust(width[i]) if i in left else cells[i].rjust(width[i])
                         for i in keep).rstrip()

    return "\n".join([line(head)] + [line(row) for row in table])
