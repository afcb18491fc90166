"""Sampler rate and each field's true refresh period, under load that makes the values move.

After PROLOGUE s of idle sampling, cycles of BUSY s of back-to-back built-in inference and IDLE s
of sleep, sampled at HZ. For each
field: its measured query cost, how many reads, how often the value changed and the interval
between changes (p10/p50/min): a value polled at 1 kHz that changes every 100 ms is 10 Hz data.
The driver-buffered samples (nvmlDeviceGetSamples) are listed with their own interval.

    python benchmarks/refresh.py --out DIR [--cycles 5] [--busy 1.0] [--idle 3.0] [--hz 1000]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd

import gpuwatch


def field_table(trace: gpuwatch.Trace) -> pd.DataFrame:
    m = trace.meta
    costs = m["field_query_cost_us"][str(m["devices"][0]["index"])]
    rows = []
    for name, r in m["sampler"]["field_refresh"].items():
        rows.append({"field": name, "tier": gpuwatch.fields.FIELDS_BY_NAME[name].cost,
                     "query_us": costs.get(name), "reads": r["reads"], "changes": r["changes"],
                     "change_ms_p10": r["change_interval_ms_p10"],
                     "change_ms_p50": r["change_interval_ms_p50"],
                     "change_ms_min": r["change_interval_ms_min"]})
    for f, g in trace.driver_samples.groupby("field"):
        iv = np.diff(np.sort(g["t_ns"].to_numpy(np.int64))) / 1e6
        rows.append({"field": f"driver:{f}", "tier": "nvmlDeviceGetSamples", "query_us": None,
                     "reads": len(g), "changes": int((np.diff(g["value"].to_numpy()) != 0).sum()),
                     "change_ms_p10": float(np.percentile(iv, 10)) if iv.size else None,
                     "change_ms_p50": float(np.median(iv)) if iv.size else None,
                     "change_ms_min": float(iv.min()) if iv.size else None})
    return pd.DataFrame(rows)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--cycles", type=int, default=5)
    ap.add_argument("--busy", type=float, default=1.0)
    ap.add_argument("--idle", type=float, default=3.0)
    ap.add_argument("--prologue", type=float, default=1.5,
                    help="seconds of sampling before the first inference (GPU idle)")
    ap.add_argument("--hz", type=float, default=1000.0)
    ap.add_argument("--sampler", default="process")
    ap.add_argument("--device", default="cuda:0", help="sim:t4 for a dry run")
    a = ap.parse_args()
    a.out.mkdir(parents=True, exist_ok=True)
    path = a.out / f"refresh_{a.sampler}.parquet"
    with gpuwatch.session(a.device, path, sample_hz=a.hz, sampler=a.sampler, overwrite=True) as s:
        e = s.engine("builtin:small")
        s.set_condition("prologue")
        s.wait(a.prologue * 1000)
        for c in range(a.cycles):
            s.set_condition(f"cycle={c}")
            end = s.clock.now_ns() + int(a.busy * 1e9)
            while s.clock.now_ns() < end:
                e.infer()
                e.synchronize()
            s.wait(a.idle * 1000)
    tr = gpuwatch.load(path)
    table = field_table(tr)
    table.to_csv(a.out / f"refresh_fields_{a.sampler}.csv", index=False)
    smp = tr.samples
    poll = smp["poll_ns"].to_numpy(float) / 1e3
    gaps = np.diff(smp["t_ns"].to_numpy(np.int64)) / 1e6
    sm = tr.meta["sampler"]
    print(f"sampler={a.sampler} requested {a.hz:g} Hz, achieved {sm['achieved_hz']:.1f} Hz; "
          f"poll us p50 {np.median(poll):.1f} p99 {np.percentile(poll, 99):.1f} "
          f"max {poll.max():.1f}; interval ms p50 {np.median(gaps):.3f} "
          f"p99 {np.percentile(gaps, 99):.3f} max {gaps.max():.3f}")
    print(table.to_string(index=False))


if __name__ == "__main__":
    main()
