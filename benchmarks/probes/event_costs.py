"""What reading a CUDA event costs the host, fresh (the first read after the GPU wrote it) and
again, through gpuwatch's runtime and through libcuda by ctypes: the region timer resolves every
region with such reads, so their cost in context is its cost. (The committed results are from
before the runtime's calls went through gpuwatch/regions/_native.c: "cuda-python" there was
cuda-python's wrapper.)

    python benchmarks/probes/event_costs.py --out DIR
"""

from __future__ import annotations

import argparse
import ctypes
import json
import time
from pathlib import Path
from typing import Any, Callable

from cuda.bindings import driver as d


def timed_us(fn: Callable[[int], Any], n: int) -> float:
    t0 = time.perf_counter()
    for i in range(n):
        fn(i)
    return (time.perf_counter() - t0) / n * 1e6


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("-n", type=int, default=4000)
    a = ap.parse_args()
    a.out.mkdir(parents=True, exist_ok=True)
    from gpuwatch.bindings.cuda import CudaRuntime

    rt = CudaRuntime(0)
    lib = ctypes.PyDLL("libcuda.so.1")
    c_elapsed = lib.cuEventElapsedTime
    c_elapsed.argtypes = (ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p)
    c_elapsed.restype = ctypes.c_int
    ms = ctypes.c_float()
    ms_ref = ctypes.byref(ms)
    n = a.n
    res: dict[str, Any] = {"n": n}

    def pairs() -> tuple[list[Any], list[Any], list[int], list[int]]:
        e0 = [rt.event() for _ in range(n)]
        e1 = [rt.event() for _ in range(n)]
        for x, y in zip(e0, e1):
            rt.record(x, 0)
            rt.record(y, 0)
        rt.synchronize(e1[-1])
        return e0, e1, [int(x) for x in e0], [int(y) for y in e1]

    for rep in range(2):
        r: dict[str, float] = {}
        e0, e1, i0, i1 = pairs()
        r["cuda-python elapsed, fresh"] = timed_us(lambda i: rt.elapsed_ms(e0[i], e1[i]), n)
        r["cuda-python elapsed, again"] = timed_us(lambda i: rt.elapsed_ms(e0[i], e1[i]), n)
        e0, e1, i0, i1 = pairs()
        r["ctypes elapsed, fresh"] = timed_us(lambda i: c_elapsed(i0[i], i1[i], ms_ref), n)
        r["ctypes elapsed, again"] = timed_us(lambda i: c_elapsed(i0[i], i1[i], ms_ref), n)
        e0, e1, i0, i1 = pairs()
        r["query end, fresh"] = timed_us(lambda i: rt.query(e1[i]), n)
        r["query end, again"] = timed_us(lambda i: rt.query(e1[i]), n)
        r["cuda-python elapsed after query"] = timed_us(lambda i: rt.elapsed_ms(e0[i], e1[i]), n)
        e0, e1, i0, i1 = pairs()
        anchor = e0[0]
        r["cuda-python elapsed from one anchor, fresh"] = timed_us(
            lambda i: rt.elapsed_ms(anchor, e1[i]), n)
        e0, e1, i0, i1 = pairs()
        r["int(CUevent)"] = timed_us(lambda i: int(e0[i]), n)
        r["record, cuda-python wrapper"] = timed_us(
            lambda i: d.cuEventRecord(rt._events[e0[i]], 0), n)
        rt.synchronize(e0[-1])
        r["record, gpuwatch's runtime"] = timed_us(lambda i: rt.record(e0[i], 0), n)
        rt.synchronize(e0[-1])
        # in context: a region's two records, then every 16 regions their resolution
        # (query the newest; two elapsed reads per region), as the timer does
        for label, el in (("cuda-python", lambda x, y, j: rt.elapsed_ms(x[j], y[j])),
                          ("ctypes", lambda x, y, j: c_elapsed(int(x[j]), int(y[j]), ms_ref))):
            e0, e1, i0, i1 = pairs()
            t0 = time.perf_counter()
            for i in range(n):
                rt.record(e0[i], 0)
                rt.record(e1[i], 0)
                if i % 16 == 15:
                    if not rt.query(e1[i]):
                        rt.synchronize(e1[i])
                    for j in range(i - 15, i + 1):
                        el(e0, e1, j)
                        el(e0, e1, j)
            r[f"region loop, {label} reads"] = (time.perf_counter() - t0) / n * 1e6
            rt.synchronize(e1[-1])
        res[f"us_per_call_rep{rep}"] = r
        print(json.dumps(r, indent=1), flush=True)
    rt.close()
    (a.out / "event_costs.json").write_text(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
