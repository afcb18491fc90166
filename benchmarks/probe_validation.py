"""The in-band SM clock against NVML's and the application clock, from traces recorded with
`--probe` (issue 14's validation): per trace and condition, the in-band clock's median and
spread, NVML's, and their difference; for a trace with a changing clock, both side by side in
time bins. Writes probe_validation.csv and probe_timeline.csv under --out.

    python3 benchmarks/probe_validation.py --out DIR [--app-mhz 1980] [--timeline T.parquet] T...
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd

import gpuwatch
from gpuwatch.analysis.merge import merge


def per_condition(path: Path, app_mhz: float | None) -> list[dict[str, object]]:
    m = merge(gpuwatch.load(path))
    m = m[~m["warmup"].astype(bool) & (m["kind"] == "inference")]
    rows = []
    for cond, g in m.groupby("condition", sort=False):
        f = g["sm_clock_inband_mhz"].to_numpy(dtype="float64", na_value=np.nan)
        nv = g["sm_clock_nvml_mhz_mean"].to_numpy(dtype="float64", na_value=np.nan)
        both = np.isfinite(f) & np.isfinite(nv)
        row: dict[str, object] = {
            "trace": path.name, "condition": cond, "regions": len(g),
            "inband_share": round(float(np.isfinite(f).mean()), 4),
            "gpu_ms_p50": round(float(g["gpu_ms"].median()), 4),
            "inband_mhz_p10": round(float(np.nanpercentile(f, 10)), 1) if both.any() else None,
            "inband_mhz_p50": round(float(np.nanmedian(f)), 1) if both.any() else None,
            "inband_mhz_p90": round(float(np.nanpercentile(f, 90)), 1) if both.any() else None,
            "nvml_mhz_p50": round(float(np.nanmedian(nv)), 1) if both.any() else None,
            "diff_mhz_p50": round(float(np.median(f[both] - nv[both])), 1) if both.any() else None,
            "corr": (round(float(np.corrcoef(f[both], nv[both])[0, 1]), 3)
                     if both.sum() > 2 and np.std(nv[both]) > 0 and np.std(f[both]) > 0 else None),
        }
        if app_mhz:
            row["inband_over_app_p50"] = (round(float(np.nanmedian(f)) / app_mhz, 4)
                                          if both.any() else None)
        rows.append(row)
    return rows


def timeline(path: Path, bin_s: float) -> pd.DataFrame:
    """In-band and NVML clocks per time bin, with the gpu_ms and the difference."""
    m = merge(gpuwatch.load(path))
    m = m[~m["warmup"].astype(bool) & (m["kind"] == "inference")].copy()
    t0 = m["start_ns"].min()
    m["t_s"] = ((m["start_ns"] - t0) / 1e9 // bin_s) * bin_s
    g = m.groupby(["condition", "t_s"], sort=False)
    out = g.agg(regions=("gpu_ms", "size"), gpu_ms_p50=("gpu_ms", "median"),
                inband_mhz_p50=("sm_clock_inband_mhz", "median"),
                inband_mhz_min=("sm_clock_inband_mhz", "min"),
                inband_mhz_max=("sm_clock_inband_mhz", "max"),
                nvml_mhz_p50=("sm_clock_nvml_mhz_mean", "median")).reset_index()
    out["diff_mhz"] = out["inband_mhz_p50"] - out["nvml_mhz_p50"]
    return out.round(3)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("traces", nargs="+", type=Path)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--app-mhz", type=float, default=None,
                    help="the GPU's application SM clock (default: NVML's, read here)")
    ap.add_argument("--timeline", type=Path, action="append", default=[])
    ap.add_argument("--bin-s", type=float, default=0.5)
    a = ap.parse_args()
    app = a.app_mhz
    if app is None:
        try:
            import pynvml

            pynvml.nvmlInit()
            app = float(pynvml.nvmlDeviceGetApplicationsClock(
                pynvml.nvmlDeviceGetHandleByIndex(0), pynvml.NVML_CLOCK_SM))
        except Exception:
            app = None
    a.out.mkdir(parents=True, exist_ok=True)
    rows = [r for t in a.traces for r in per_condition(t, app)]
    df = pd.DataFrame(rows)
    df.to_csv(a.out / "probe_validation.csv", index=False)
    with pd.option_context("display.width", 250, "display.max_columns", 30):
        print(f"application SM clock: {app} MHz")
        print(df.to_string(index=False))
        for t in a.timeline:
            tl = timeline(t, a.bin_s)
            tl.to_csv(a.out / f"probe_timeline_{t.stem}.csv", index=False)
            print(f"\n{t.name}, in-band vs NVML per {a.bin_s} s:\n{tl.to_string(index=False)}")


if __name__ == "__main__":
    main()
