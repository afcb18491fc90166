"""The in-band SM clock against NVML's, per trace: how far the reading every clock verdict used
to rest on (NVML's, refreshed every ~100 ms on an H100) is from the clock measured over each
region (see regions/timer.py, the probe)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from .columns import floats

COLUMNS = ["trace", "regions", "inband_mhz_p50", "nvml_mhz_p50", "abs_diff_mhz_p50",
           "abs_diff_mhz_p90", "abs_diff_mhz_max", "abs_diff_pct_p90"]


def compare(merged: pd.DataFrame, trace: int) -> pd.DataFrame:
    """One row for trace `trace`: over its measured regions with both clocks, the medians and
    the spread of |in-band - NVML|. Empty where the trace has no in-band clock."""
    if merged.empty or "sm_clock_inband_mhz" not in merged:
        return pd.DataFrame(columns=COLUMNS)
    m = merged[~merged["warmup"].astype(bool)]
    inband = m["sm_clock_inband_mhz"].pipe(floats)
    nvml = m["sm_clock_nvml_mhz_mean"].pipe(floats)
    both = ~np.isnan(inband) & ~np.isnan(nvml)
    if not both.any():
        return pd.DataFrame(columns=COLUMNS)
    d = np.abs(inband[both] - nvml[both])
    return pd.DataFrame([{
        "trace": trace, "regions": int(both.sum()),
        "inband_mhz_p50": float(np.median(inband[both])),
        "nvml_mhz_p50": float(np.median(nvml[both])),
        "abs_diff_mhz_p50": float(np.median(d)),
        "abs_diff_mhz_p90": float(np.percentile(d, 90)),
        "abs_diff_mhz_max": float(d.max()),
        "abs_diff_pct_p90": float(np.percentile(d / inband[both], 90) * 100),
    }], columns=COLUMNS)


LAG_NOTE_MHZ = 100.0  # a largest difference this far over the p90: said where it comes from


def sentence(row: pd.Series) -> str:
    """The report's line for one compare() row."""
    # (a few regions far off while most agree: NVML's value is the last it refreshed, so
    # regions right after the clock moved differ by the whole move until its next refresh)
    lag = (" (NVML's value lags a change of clock until its next refresh, about every 100 ms "
           "on an H100: regions just after one differ most)"
           if row.abs_diff_mhz_max > max(3 * row.abs_diff_mhz_p90, LAG_NOTE_MHZ) else "")
    return (f"SM clock, in-band (measured over each region) p50 {row.inband_mhz_p50:.0f} MHz, "
            f"NVML p50 {row.nvml_mhz_p50:.0f} MHz; |in-band - NVML| per region p50 "
            f"{row.abs_diff_mhz_p50:.0f}, p90 {row.abs_diff_mhz_p90:.0f} "
            f"({row.abs_diff_pct_p90:.1f}%), max {row.abs_diff_mhz_max:.0f} MHz over "
            f"{row.regions} regions{lag}. Clock attribution uses the in-band clock.")
