"""What one in-band clock stamp costs (host time per launch, GPU time per stamp), and what the
stamps read around different kinds of region: the GPU idle (a host sleep), a spin kernel on one
SM, small and large GEMMs, a launch-bound conv net eager and as a CUDA graph.

    python3 benchmarks/probe_cost.py --out DIR
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np

import gpuwatch


def stamp_costs(n: int = 2000) -> dict[str, float]:
    import torch

    from gpuwatch.bindings.cuda import CudaRuntime

    rt = CudaRuntime(0)
    rt.start_probe()
    s = torch.cuda.Stream()
    h = s.cuda_stream
    torch.cuda.synchronize()
    host = []
    for _ in range(5):
        t0 = time.perf_counter_ns()
        for _ in range(n):
            rt.probe(h)
        host.append((time.perf_counter_ns() - t0) / n / 1e3)
        s.synchronize()
    e0, e1 = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    gpu = []
    for _ in range(5):
        e0.record(s)
        for _ in range(200):
            rt.probe(h)
        e1.record(s)
        s.synchronize()
        gpu.append(e0.elapsed_time(e1) / 200 * 1e3)
    return {"host_us_per_stamp_p50": float(np.median(host)),
            "gpu_us_per_stamp_p50": float(np.median(gpu)), "sm_count": rt.sm_count}


def regions(out: Path) -> list[dict[str, Any]]:
    import torch

    from gpuwatch.bindings.torch import convnet

    net, x = convnet()
    a = torch.randn(2048, 2048, device="cuda", dtype=torch.half)
    b = torch.randn(8192, 8192, device="cuda", dtype=torch.half)
    with torch.inference_mode():
        for _ in range(3):
            net(x)
        torch.cuda.synchronize()
        g = torch.cuda.CUDAGraph()
        with torch.cuda.graph(g):
            net(x)

    def small_gemms() -> None:
        for _ in range(20):
            torch.mm(a, a)

    kinds = {
        "idle (host sleep 1 ms)": lambda: time.sleep(0.001),
        "spin kernel, one SM, ~1 ms": lambda: torch.cuda._sleep(2_000_000),
        "20 gemm 2048 fp16": small_gemms,
        "1 gemm 8192 fp16": lambda: torch.mm(b, b),
        "convnet eager": lambda: net(x),
        "convnet graph": g.replay,
    }
    rows = []
    with torch.inference_mode(), gpuwatch.session(out=out, probe=True, sample_hz=200,
                                                  overwrite=True) as s:
        for _ in range(3):  # interleaved rounds
            for name, fn in kinds.items():
                s.set_condition(name)
                for _ in range(50):
                    s.infer(fn)
                    torch.cuda.current_stream().synchronize()
                    time.sleep(0.002)
    inf = gpuwatch.load(out).measured()
    for name, g_ in inf.groupby("condition", sort=False):
        f = g_["sm_clock_inband_mhz"].to_numpy(float)
        rows.append({"region": name, "n": len(g_), "gpu_ms_p50": round(float(g_["gpu_ms"].median()), 4),
                     "inband_mhz_p10": round(float(np.nanpercentile(f, 10)), 1),
                     "inband_mhz_p50": round(float(np.nanmedian(f)), 1),
                     "inband_mhz_p90": round(float(np.nanpercentile(f, 90)), 1),
                     "na": int(np.isnan(f).sum())})
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, required=True)
    a = ap.parse_args()
    a.out.mkdir(parents=True, exist_ok=True)
    costs = stamp_costs()
    print(json.dumps(costs))
    rows = regions(a.out / "probe_regions.parquet")
    for r in rows:
        print(r)
    (a.out / "probe_cost.json").write_text(json.dumps({"stamp": costs, "regions": rows}, indent=1))


if __name__ == "__main__":
    main()
