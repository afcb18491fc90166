"""Achieved sampling rate against the requested one, with the built-in engine running.

For each requested rate: a session sampling in its own process while back-to-back inference runs
for SECONDS; reports the achieved rate, the share of grid ticks missed (a poll taken more than
1.5 periods after the previous one), the interval and poll-cost percentiles.

    python benchmarks/sampler_rate.py --out DIR [--rates 1000,2000,5000] [--seconds 5]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd

import gpuwatch


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--rates", default="1000,2000,5000")
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--sampler", default="process")
    ap.add_argument("--device", default="cuda:0")
    a = ap.parse_args()
    a.out.mkdir(parents=True, exist_ok=True)
    rows = []
    for hz in [float(r) for r in a.rates.split(",")]:
        path = a.out / f"rate_{a.sampler}_{hz:g}.parquet"
        with gpuwatch.session(a.device, path, sample_hz=hz, sampler=a.sampler, overwrite=True) as s:
            e = s.engine("builtin:small")
            end = s.clock.now_ns() + int(a.seconds * 1e9)
            while s.clock.now_ns() < end:
                e.infer()
                e.synchronize()
        tr = gpuwatch.load(path)
        t = tr.samples["t_ns"].to_numpy(np.int64)
        iv = np.diff(t) / 1e6
        poll = tr.samples["poll_ns"].to_numpy(float) / 1e3
        period_ms = 1e3 / hz
        rows.append({
            "requested_hz": hz, "achieved_hz": tr.meta["sampler"]["achieved_hz"],
            "late_intervals_pct": float((iv > 1.5 * period_ms).mean() * 100),
            "interval_ms_p50": float(np.median(iv)), "interval_ms_p99": float(np.percentile(iv, 99)),
            "interval_ms_max": float(iv.max()), "poll_us_p50": float(np.median(poll)),
            "poll_us_p99": float(np.percentile(poll, 99)),
        })
        path.unlink()
    df = pd.DataFrame(rows)
    df.to_csv(a.out / f"sampler_rate_{a.sampler}.csv", index=False)
    print(df.to_string(index=False, float_format=lambda v: f"{v:.3f}"))


if __name__ == "__main__":
    main()
