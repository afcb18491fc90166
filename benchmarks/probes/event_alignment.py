"""How well do inference windows line up with the kernels inside them? For traces recorded with
`--kernels` where CUPTI delivered CUDA-event device timestamps, compares both ways of placing a
window on the time base: the GPU's own event timestamps (`cuda_event` rows) and gpuwatch's
anchor-mapped CUDA-event times. The first kernel must start after the start event and the end
event must follow the last kernel, so `first kernel - start` and `end - last kernel` are never
negative for a correct placement; on a fed engine the end gap is the GPU's own event latency.

    python benchmarks/probes/event_alignment.py TRACE.parquet [...]
"""

from __future__ import annotations

import argparse

import numpy as np
import pandas as pd

import gpuwatch


def gaps_us(trace: gpuwatch.Trace) -> pd.DataFrame:
    k = trace.kernels
    ev = k[k["kind"] == "cuda_event"]
    work = k[k["kind"] != "cuda_event"].sort_values("start_ns")
    ts = pd.Series(ev["start_ns"].to_numpy(np.int64), index=ev["correlation_id"].to_numpy(np.int64))
    inf = trace.measured().dropna(subset=["start_ns", "region_id"])
    rid = inf["region_id"].to_numpy(np.int64)
    ev_s = ts.reindex(2 * rid).to_numpy(dtype=float)
    ev_e = ts.reindex(2 * rid + 1).to_numpy(dtype=float)
    an_s = inf["start_ns"].to_numpy(dtype=float)
    an_e = inf["end_ns"].to_numpy(dtype=float)
    ks, ke = work["start_ns"].to_numpy(np.int64), work["end_ns"].to_numpy(np.int64)
    rows = []
    for i in range(len(inf)):
        if np.isnan(ev_s[i]) or np.isnan(ev_e[i]):
            continue
        # the kernels of this inference: those starting inside the union of both windows
        lo = np.searchsorted(ks, min(ev_s[i], an_s[i]))
        hi = np.searchsorted(ks, max(ev_e[i], an_e[i]))
        if hi <= lo:
            continue
        first, last = ks[lo:hi].min(), ke[lo:hi].max()
        rows.append({"condition": inf["condition"].iat[i], "name": inf["name"].iat[i],
                     "first_kernel_minus_start_cupti": first - ev_s[i],
                     "first_kernel_minus_start_anchor": first - an_s[i],
                     "end_minus_last_kernel_cupti": ev_e[i] - last,
                     "end_minus_last_kernel_anchor": an_e[i] - last,
                     "window_minus_elapsed_cupti": (ev_e[i] - ev_s[i]) - inf["gpu_ms"].iat[i] * 1e6})
    df = pd.DataFrame(rows)
    num = df.columns[2:]
    df[num] = df[num] / 1e3
    return df


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("traces", nargs="+")
    for path in ap.parse_args().traces:
        t = gpuwatch.load(path)
        df = gaps_us(t)
        print(f"{path}: {len(df)} inferences with both event timestamps "
              f"(CUDA-event device timestamps: "
              f"{t.meta.get('kernel_trace', {}).get('cuda_event_device_timestamps')})")
        if df.empty:
            continue
        q = df.iloc[:, 2:].quantile([0.01, 0.05, 0.5, 0.95, 0.99]).T
        q.columns = ["p1 us", "p5 us", "p50 us", "p95 us", "p99 us"]
        print(q.round(2).to_string())
        print()


if __name__ == "__main__":
    main()
