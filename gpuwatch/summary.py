"""Per-condition latency summary (what `record` prints): percentiles and the SM clock seen."""

from __future__ import annotations

import numpy as np
import pandas as pd

from .trace import Trace

EARLY_ITERS = 50  # the seed's layering starts after ~50-60 iterations
LATE_ITERS = 100  # and is stable over the last few hundred


def condition_summary(trace: Trace) -> pd.DataFrame:
    """One row per condition, in recording order: latency p50/p90/p99 (CUDA-event ms) over the
    measured iterations, the SM clock at the middle of each inference (median, min, max), and
    the median of the last LATE_ITERS over the first EARLY_ITERS (>1 means it got slower)."""
    inf = trace.measured()
    cols = ["condition", "gap_ms", "n", "p50_ms", "p90_ms", "p99_ms", "sm_clock_p50_mhz",
            "sm_clock_min_mhz", "sm_clock_max_mhz", "early_p50_ms", "late_p50_ms", "late_over_early"]
    inf = inf.dropna(subset=["gpu_ms", "start_ns"])
    if inf.empty:
        return pd.DataFrame(columns=cols)
    inf = inf.assign(mid_ns=(inf["start_ns"] + (inf["end_ns"] - inf["start_ns"]) // 2).astype("int64"))
    inf = inf.assign(gpu=inf["gpu"].astype("int64"), condition=inf["condition"].fillna(""))
    s = trace.samples[["t_ns", "gpu", "sm_clock_mhz"]].dropna()
    s = s.assign(t_ns=s["t_ns"].astype("int64"), gpu=s["gpu"].astype("int64"),
                 sm_clock_mhz=s["sm_clock_mhz"].astype("float64"))
    merged = pd.merge_asof(inf.sort_values("mid_ns"), s.sort_values("t_ns"), left_on="mid_ns",
                           right_on="t_ns", by="gpu", direction="backward")
    rows = []
    for cond, g in merged.groupby("condition", sort=False):
        g = g.sort_values("iteration")
        lat = g["gpu_ms"].to_numpy(dtype=float)
        clk = g["sm_clock_mhz"].dropna().to_numpy(dtype=float)
        early = float(np.median(lat[:EARLY_ITERS]))
        late = float(np.median(lat[-LATE_ITERS:]))
        p50, p90, p99 = np.percentile(lat, [50, 90, 99])
        rows.append({
            "condition": cond, "gap_ms": g["gap_ms"].iloc[0], "n": len(lat),
            "p50_ms": p50, "p90_ms": p90, "p99_ms": p99,
            "sm_clock_p50_mhz": float(np.median(clk)) if clk.size else np.nan,
            "sm_clock_min_mhz": float(clk.min()) if clk.size else np.nan,
            "sm_clock_max_mhz": float(clk.max()) if clk.size else np.nan,
            "early_p50_ms": early, "late_p50_ms": late, "late_over_early": late / early,
        })
    first_seen = {c: i for i, c in enumerate(dict.fromkeys(inf.sort_values("t_ns")["condition"]))}
    out = pd.DataFrame(rows, columns=cols)
    return out.sort_values("condition", key=lambda c: c.map(first_seen)).reset_index(drop=True)


def format_summary(df: pd.DataFrame) -> str:
    """The summary as an aligned text table."""
    head = f"{'condition':<14}{'n':>6}{'p50 ms':>9}{'p90 ms':>9}{'p99 ms':>9}" \
           f"{'SM MHz p50 (min-max)':>24}{'late/early':>12}"
    lines = [head]
    for r in df.itertuples():
        clk = "NA" if np.isnan(r.sm_clock_p50_mhz) else \
            f"{r.sm_clock_p50_mhz:.0f} ({r.sm_clock_min_mhz:.0f}-{r.sm_clock_max_mhz:.0f})"
        lines.append(f"{r.condition:<14}{r.n:>6}{r.p50_ms:>9.2f}{r.p90_ms:>9.2f}{r.p99_ms:>9.2f}"
                     f"{clk:>24}{r.late_over_early:>11.2f}x")
    return "\n".join(lines)
