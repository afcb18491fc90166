"""Where a timed region's cost goes, on a real GPU: the host cost of each call on the timed
path, the GPU-side gap an empty region measures (what gpuwatch puts between its events), and
the launch-bound conv net alternated with the bare loop every iteration, under variations
(sampler paused, garbage collector off) to tell what moves the ratio.

    python benchmarks/probes/region_cost.py --out DIR
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import io
import json
import pstats
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

import gpuwatch


def per_call_us(fn: Callable[[], Any], n: int = 20000) -> float:
    for _ in range(200):
        fn()
    t0 = time.perf_counter()
    for _ in range(n):
        fn()
    return (time.perf_counter() - t0) / n * 1e6


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, required=True)
    a = ap.parse_args()
    a.out.mkdir(parents=True, exist_ok=True)
    import torch
    from cuda.bindings import driver

    from gpuwatch import streams
    from gpuwatch.bindings.cuda import CudaRuntime
    from gpuwatch.bindings.torch import convnet

    res: dict[str, Any] = {"gpu": torch.cuda.get_device_name()}
    net, x = convnet()
    torch.cuda.synchronize()
    rt = CudaRuntime(0)
    legacy = driver.CUstream(0)
    ev0, ev1 = rt.event(), rt.event()
    t0, t1 = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    cur = torch.cuda.current_stream()

    def noop() -> None:
        pass

    # -- host cost of each call (us) --------------------------------------------------------
    rt.record(ev0, legacy)
    rt.record(ev1, legacy)
    rt.synchronize(ev1)
    host = {
        "cuEventRecord (gpuwatch's runtime)": per_call_us(lambda: rt.record(ev0, legacy)),
        "cuEventQuery": per_call_us(lambda: rt.query(ev0)),
        "cuEventElapsedTime": (rt.record(ev1, legacy), rt.synchronize(ev1),
                               per_call_us(lambda: rt.elapsed_ms(ev0, ev1)))[2],
        "torch Event.record(stream)": per_call_us(lambda: t0.record(cur)),
        "torch Event.elapsed_time": (t1.record(cur), t1.synchronize(),
                                     per_call_us(lambda: t0.elapsed_time(t1)))[2],
        "streams.current()": per_call_us(lambda: streams.current(0)),
        "perf_counter_ns": per_call_us(time.perf_counter_ns),
    }
    torch.cuda.synchronize()
    with gpuwatch.session(out=a.out / "noop.parquet", overwrite=True) as s:
        host["s.infer(noop) + nothing"] = per_call_us(lambda: s.infer(noop), 20000)
        # The same region taken apart: the timer alone (no infer(), no stream lookup); its
        # rows not handed to the writer; not resolved at all (events straight back to the pool)
        tm, ref = s._timer, streams.current(0)
        labels = (None, None, 0, False, None)

        def region() -> None:
            tm.end(tm.begin("inference", "noop", ref, labels), None)

        def unresolved() -> None:
            p = tm.begin("inference", "noop", ref, labels)
            tm.end(p, None)
            tm._pending.pop()
            tm._free.append((p.ev0, p.ev1))

        host["timer.begin + end"] = per_call_us(region)
        sink, tm._sink = tm._sink, lambda table, columns: None
        host["timer.begin + end, rows discarded"] = per_call_us(region)
        tm._sink = sink
        host["timer.begin + end, not resolved"] = per_call_us(unresolved)
        prof = cProfile.Profile()
        prof.enable()
        for _ in range(5000):
            s.infer(noop)
        prof.disable()
    buf = io.StringIO()
    pstats.Stats(prof, stream=buf).sort_stats("tottime").print_stats(20)
    (a.out / "region_cost_profile.txt").write_text(buf.getvalue())
    res["host_us_per_call"] = host

    # -- what an empty region measures on the GPU (us) -------------------------------------
    def bare_empty(n: int) -> list[float]:
        out = []
        for _ in range(n):
            t0.record(cur)
            t1.record(cur)
            t1.synchronize()
            out.append(t0.elapsed_time(t1) * 1e3)
        return out

    def cudapy_empty(n: int) -> list[float]:
        out = []
        for _ in range(n):
            rt.record(ev0, legacy)
            rt.record(ev1, legacy)
            rt.synchronize(ev1)
            out.append(rt.elapsed_ms(ev0, ev1) * 1e3)
        return out

    with gpuwatch.session(out=a.out / "empty.parquet", overwrite=True) as s:
        for _ in range(2000):
            s.infer(noop)
            cur.synchronize()
    ours = s.trace.measured()["gpu_ms"].to_numpy() * 1e3
    res["empty_region_gpu_us_p50"] = {"bare torch events": float(np.median(bare_empty(2000))),
                                      "cuda-python events": float(np.median(cudapy_empty(2000))),
                                      "gpuwatch s.infer(noop)": float(np.median(ours))}

    # -- the launch-bound conv net, bare and gpuwatch alternating every iteration ------------
    def alternate(label: str, n: int = 1500, paused: bool = False, no_gc: bool = False,
                  ) -> dict[str, float]:
        gpu_b, wall_b, wall_g = [], [], []
        with torch.inference_mode(), \
                gpuwatch.session(out=a.out / "alt.parquet", overwrite=True) as s:
            if paused:
                s.pause_sampling()
            if no_gc:
                gc.disable()
            try:
                for _ in range(n):
                    h = time.perf_counter()
                    t0.record(cur)
                    net(x)
                    t1.record(cur)
                    t1.synchronize()
                    wall_b.append(time.perf_counter() - h)
                    gpu_b.append(t0.elapsed_time(t1))
                    h = time.perf_counter()
                    s.infer(net, x)
                    cur.synchronize()
                    wall_g.append(time.perf_counter() - h)
            finally:
                gc.enable()
        gpu_g = s.trace.measured()["gpu_ms"].to_numpy()
        return {"variant": label,
                "gpu_bare_ms": float(np.median(gpu_b)), "gpu_gpuwatch_ms": float(np.median(gpu_g)),
                "gpu_diff_us_p50": float(np.median((gpu_g - np.asarray(gpu_b)) * 1e3)),
                "wall_bare_ms": float(np.median(wall_b) * 1e3),
                "wall_gpuwatch_ms": float(np.median(wall_g) * 1e3),
                "wall_diff_us_p50": float(np.median((np.asarray(wall_g) - wall_b) * 1e6))}

    res["convnet_alternating"] = [alternate("default"), alternate("sampler paused", paused=True),
                                  alternate("gc off", no_gc=True)]
    rt.close()
    (a.out / "region_cost.json").write_text(json.dumps(res, indent=1))
    print(json.dumps(res, indent=1))
    print(buf.getvalue()[:3000])


if __name__ == "__main__":
    main()
