"""Where an empty timed region's host cost goes on a real GPU, variants interleaved in short
blocks (a VM's host speed drifts too much for back-to-back runs to be compared).

Each variant is a loop of empty regions; per block of BLOCK regions the mean cost per region
(us), median over ROUNDS rounds. Variants take the region apart: the whole `s.infer(noop)`
with the sampler running or paused, the timer alone, the timer without handing rows to the
writer, the timer without resolution, and the CUDA calls alone (two records per region, then
per 16 regions a query and two elapsed-time reads per region, from an anchor on the private
stream as the timer does, or on the same stream).

    python benchmarks/probes/region_breakdown.py --out DIR
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

import gpuwatch


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--block", type=int, default=1000)
    ap.add_argument("--rounds", type=int, default=15)
    a = ap.parse_args()
    a.out.mkdir(parents=True, exist_ok=True)
    import torch

    from gpuwatch import streams

    torch.cuda.synchronize()

    def noop() -> None:
        pass

    with gpuwatch.session(out=a.out / "breakdown.parquet", overwrite=True) as s:
        tm, ref = s._timer, streams.current(0)
        rt, tb = tm._rt, tm._tb
        labels = (None, None, 0, False, None)
        sink = tm._sink

        def infer(n: int) -> None:
            for _ in range(n):
                s.infer(noop)

        def infer_paused(n: int) -> None:
            s.pause_sampling()
            infer(n)
            s.resume_sampling()

        def timer(n: int) -> None:
            for _ in range(n):
                tm.end(tm.begin("inference", "noop", ref, labels), None)

        def timer_no_rows(n: int) -> None:
            tm._sink = lambda table, columns: None
            timer(n)
            tm._sink = sink

        def timer_unresolved(n: int) -> None:
            for _ in range(n):
                p = tm.begin("inference", "noop", ref, labels)
                tm.end(p, None)
                tm._pending.pop()
                tm._free.append((p.ev0, p.ev1))

        pool = [(rt.event(), rt.event()) for _ in range(16)]
        same_anchor = rt.event()
        rt.record(same_anchor, 0)

        def cuda_calls(anchor_of: Callable[[], Any]) -> Callable[[int], None]:
            def run(n: int) -> None:
                for i in range(n):
                    e0, e1 = pool[i % 16]
                    rt.record(e0, 0)
                    rt.record(e1, 0)
                    if i % 16 == 15:
                        if not rt.query(e1):
                            rt.synchronize(e1)
                        anchor = anchor_of()
                        for x, y in pool:
                            rt.elapsed_ms(anchor, x)
                            rt.elapsed_ms(x, y)
            return run

        variants: dict[str, Callable[[int], None]] = {
            "s.infer(noop), sampler running": infer,
            "s.infer(noop), sampler paused": infer_paused,
            "timer begin+end": timer,
            "timer begin+end, rows not handed to the writer": timer_no_rows,
            "timer begin+end, not resolved": timer_unresolved,
            "CUDA calls only, anchor on the private stream": cuda_calls(lambda: tb.current.event),
            "CUDA calls only, anchor on the same stream": cuda_calls(lambda: same_anchor),
        }
        per: dict[str, list[float]] = {k: [] for k in variants}
        for fn in variants.values():
            fn(200)  # warm
        names = list(variants)
        for r in range(a.rounds):
            order = names if r % 2 == 0 else names[::-1]
            for k in order:
                torch.cuda.synchronize()
                t0 = time.perf_counter()
                variants[k](a.block)
                per[k].append((time.perf_counter() - t0) / a.block * 1e6)
        regions_meta = dict(tm.summary())
    # The same Python on the stand-in device (no CUDA calls: its events are host reads):
    # gpuwatch's own Python cost on this host, to compare with the machine it was written on.
    standin = []
    with gpuwatch.session("standin", out=a.out / "standin.parquet", overwrite=True) as s:
        for r in range(a.rounds):
            t0 = time.perf_counter()
            for _ in range(a.block):
                s.infer(noop)
            standin.append((time.perf_counter() - t0) / a.block * 1e6)
    per["stand-in device: s.infer(noop) (Python only)"] = standin
    res = {"gpu": torch.cuda.get_device_name(), "block": a.block, "rounds": a.rounds,
           "us_per_region_p50": {k: float(np.median(v)) for k, v in per.items()},
           "us_per_region_iqr": {k: [float(np.percentile(v, 25)), float(np.percentile(v, 75))]
                                 for k, v in per.items()},
           "regions": regions_meta}
    (a.out / "region_breakdown.json").write_text(json.dumps(res, indent=1))
    print(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
