"""Does the in-band clock explain the time? For kernels run at two clocks (back to back, where a
sustained load meets the power cap, and with gaps, where it runs cool), each region stamped
(probe_every_ms=0), the cycles per inference (gpu_ms x in-band MHz) should hold for work bound
by the SMs and grow with the clock for work bound by memory (its time does not shrink when the
SMs run faster). Cases: a pair of bf16 8192^2 GEMMs (the issue-28 run: compute-bound, it reaches
the power cap), and a 1 GiB fp16 add (memory-bound). Writes probe_physics.csv and the traces.

    python3 benchmarks/probe_physics.py --out DIR [--seconds 12] [--gap-ms 50]
    python3 benchmarks/probe_physics.py --out DIR --traces T.parquet...   # tabulate, no GPU
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd

import gpuwatch
from gpuwatch.analysis.merge import merge


def cases() -> dict[str, tuple[Callable[[], Any], Any]]:
    import torch

    a = torch.randn(8192, 8192, device="cuda", dtype=torch.bfloat16)
    b = torch.randn(8192, 8192, device="cuda", dtype=torch.bfloat16)
    x = torch.randn(512 << 20, device="cuda", dtype=torch.half)  # 1 GiB
    y = torch.randn(512 << 20, device="cuda", dtype=torch.half)

    def gemm_pair() -> Any:
        return (a @ b) @ b

    def add() -> Any:
        return x + y

    return {"gemm bf16 8192^2 x2 (compute-bound)": (gemm_pair, None),
            "add fp16 1 GiB (memory-bound)": (add, None)}


def record(out: Path, name: str, fn: Callable[[], Any], seconds: float, gap_ms: float) -> Path:
    import torch

    path = out / (name.split(" (")[0].replace(" ", "_").replace("^", "") + ".parquet")
    with torch.inference_mode(), gpuwatch.session(out=path, probe=True, probe_every_ms=0,
                                                  overwrite=True) as s:
        for _ in range(20):
            fn()
        torch.cuda.synchronize()
        for cond, gap in (("gap=0ms", 0.0), (f"gap={gap_ms:g}ms", gap_ms), ("gap=0ms again", 0.0)):
            s.set_condition(cond, gap_ms=gap)
            t0 = time.perf_counter()
            while time.perf_counter() - t0 < seconds:
                s.infer(fn)
                if gap:
                    torch.cuda.synchronize()
                    time.sleep(gap / 1e3)
            torch.cuda.synchronize()
    return path


def table(path: Path, case: str) -> list[dict[str, Any]]:
    m = merge(gpuwatch.load(path))
    m = m[(m["kind"] == "inference") & ~m["warmup"].astype(bool)]
    rows = []
    for cond, g in m.groupby("condition", sort=False):
        g = g.iloc[len(g) // 4:]  # (the clock settles: the last three quarters)
        f = g["sm_clock_inband_mhz"].to_numpy("float64", na_value=np.nan)
        ms = g["gpu_ms"].to_numpy("float64", na_value=np.nan)
        # the GPU waiting for the host inside the region: after an idle gap the start event
        # runs at once (launch_ms ~0.01) and the kernel only when the host has enqueued it
        # (enqueue_ms); back to back the work queues (launch_ms >> enqueue_ms) and it is 0
        wait = np.maximum(g["enqueue_ms"].to_numpy("float64", na_value=np.nan)
                          - np.maximum(g["launch_ms"].to_numpy("float64", na_value=np.nan), 0), 0)
        ok = np.isfinite(f) & np.isfinite(ms) & np.isfinite(wait)
        cyc = ms[ok] * f[ok] * 1e3  # ms x MHz = 1e3 cycles
        busy = (ms[ok] - wait[ok]) * f[ok] * 1e3  # (the kernels' own cycles)
        rows.append({"case": case, "condition": cond, "regions": int(ok.sum()),
                     "gpu_ms_p50": round(float(np.median(ms[ok])), 4),
                     "inband_mhz_p50": round(float(np.median(f[ok])), 1),
                     "nvml_mhz_p50": round(float(g["sm_clock_nvml_mhz_mean"].median()), 1),
                     "mcycles_p50": round(float(np.median(cyc)) / 1e6, 4),
                     "mcycles_iqr": f"{np.percentile(cyc, 25) / 1e6:.4f}.."
                                    f"{np.percentile(cyc, 75) / 1e6:.4f}",
                     "host_wait_ms_p50": round(float(np.median(wait[ok])), 4),
                     "busy_mcycles_p50": round(float(np.median(busy)) / 1e6, 4),
                     "power_w_p50": round(float(g["power_w_mean"].median()), 1),
                     "reasons_any": int(np.bitwise_or.reduce(g["reasons_any"].to_numpy(np.int64)))})
    base = rows[0]
    for r in rows:
        # clock ratio against time ratio: a compute-bound kernel's time scales as 1/f
        r["time_ratio"] = round(r["gpu_ms_p50"] / base["gpu_ms_p50"], 4)
        r["inv_clock_ratio"] = round(base["inband_mhz_p50"] / r["inband_mhz_p50"], 4)
        r["cycles_ratio"] = round(r["mcycles_p50"] / base["mcycles_p50"], 4)
        r["busy_cycles_ratio"] = round(r["busy_mcycles_p50"] / base["busy_mcycles_p50"], 4)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--seconds", type=float, default=12.0)
    ap.add_argument("--gap-ms", type=float, default=50.0)
    ap.add_argument("--traces", type=Path, nargs="*", default=None,
                    help="tabulate these recorded traces instead of recording (no GPU needed)")
    a = ap.parse_args()
    a.out.mkdir(parents=True, exist_ok=True)
    rows = []
    if a.traces:
        for t in a.traces:
            rows += table(t, t.stem)
    for name, (fn, _) in ({} if a.traces else cases()).items():
        t0 = time.time()
        rows += table(record(a.out, name, fn, a.seconds, a.gap_ms), name)
        print(f"done: {name} ({time.time() - t0:.0f} s)", flush=True)
    df = pd.DataFrame(rows)
    df.to_csv(a.out / "probe_physics.csv", index=False)
    with pd.option_context("display.width", 250, "display.max_columns", 30):
        print(df.to_string(index=False))


if __name__ == "__main__":
    main()
