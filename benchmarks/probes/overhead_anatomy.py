"""Why a launch-bound model measures slower under gpuwatch: variants of the program's loop, in
blocks of BLOCK iterations, every variant once per round in a rotating order, all in one
session (the same host speed and GPU clocks for all).

A variant's cost is the median over rounds of (its block median / the bare block median of
the same round), for gpu_ms and for wall time. Blocks, not single iterations: what gpuwatch's
code leaves behind in the host's caches slows the *next* iteration, so alternating single
iterations would charge part of it to the bare loop.

Arms:
- bare: torch events around the model on the current stream, then the program's own
  synchronise (the stream), then the events' elapsed time.
- bare, event sync: the same, synchronising on the end event instead (the benchmark's bare
  loop until this run).
- gpuwatch: `s.infer(net, x)`, then the program's own synchronise.
- gpuwatch, no writer: the same, resolved rows kept in a list instead of handed to the trace
  writer (its thread converts them to Arrow).
- gpuwatch, ctypes calls: the same, with the event calls made through ctypes instead of the C
  extension (gpuwatch/regions/_native.c).
- bare + empty region: the bare loop, then `s.infer(noop)` after each iteration (gpuwatch's
  code between iterations, not around the model).

    python benchmarks/probes/overhead_anatomy.py --out DIR [--rounds 200] [--block 10]
"""

from __future__ import annotations

import argparse
import ctypes
import json
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

import gpuwatch


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--rounds", type=int, default=200)
    ap.add_argument("--block", type=int, default=10)
    a = ap.parse_args()
    a.out.mkdir(parents=True, exist_ok=True)
    import pandas as pd
    import torch

    from gpuwatch.bindings.cuda import _EventCalls
    from gpuwatch.bindings.torch import convnet

    net, x = convnet()
    cur = torch.cuda.current_stream()
    t0, t1 = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    n = a.block

    def noop() -> None:
        pass

    Block = Callable[[], tuple[list[float] | None, list[float]]]

    def bare(event_sync: bool = False, after: Callable[[], Any] | None = None) -> Block:
        sync = t1.synchronize if event_sync else cur.synchronize

        def run() -> tuple[list[float] | None, list[float]]:
            gpu, wall = [], []
            for _ in range(n):
                h = time.perf_counter()
                t0.record(cur)
                net(x)
                t1.record(cur)
                sync()
                gpu.append(t0.elapsed_time(t1))
                wall.append(time.perf_counter() - h)
                if after is not None:
                    after()
            return gpu, wall
        return run

    with torch.inference_mode(), \
            gpuwatch.session(out=a.out / "anatomy.parquet", overwrite=True) as s:
        tm = s._timer
        sink = tm._sink
        kept: list[dict[str, list[Any]]] = []  # rows resolved while the writer is bypassed
        rids: dict[str, list[list[int]]] = {}

        def gpuwatch_arm(label: str, no_writer: bool = False) -> Block:
            def run() -> tuple[list[float] | None, list[float]]:
                if no_writer:
                    tm._sink = lambda table, columns: kept.append(columns)
                wall, ids = [], []
                for _ in range(n):
                    ids.append(tm._seq)
                    h = time.perf_counter()
                    s.infer(net, x)
                    cur.synchronize()
                    wall.append(time.perf_counter() - h)
                tm._sink = sink
                rids.setdefault(label, []).append(ids)
                return None, wall
            return run

        rt = tm._rt
        native_calls = rt._calls
        ctypes_calls = _EventCalls(ctypes.PyDLL("libcuda.so.1"), use_native=False)
        ctypes_gw = gpuwatch_arm("gpuwatch, ctypes calls")

        def ctypes_arm() -> tuple[list[float] | None, list[float]]:
            rt._calls = ctypes_calls
            try:
                return ctypes_gw()
            finally:
                rt._calls = native_calls

        arms: dict[str, Block] = {
            "bare": bare(),
            "bare, event sync": bare(event_sync=True),
            "gpuwatch": gpuwatch_arm("gpuwatch"),
            "gpuwatch, no writer": gpuwatch_arm("gpuwatch, no writer", no_writer=True),
            "gpuwatch, ctypes calls": ctypes_arm,
            "bare + empty region": bare(after=lambda: s.infer(noop)),
        }
        names = list(arms)
        for fn in arms.values():
            fn()  # warm
        rids.clear()
        blocks: dict[str, list[tuple[list[float] | None, list[float]]]] = {k: [] for k in names}
        for r in range(a.rounds):
            k0 = r % len(names)
            order = names[k0:] + names[:k0]
            for k in (order if (r // len(names)) % 2 == 0 else order[::-1]):
                blocks[k].append(arms[k]())
    rows = pd.concat([s.trace.inferences[["region_id", "gpu_ms"]]] +
                     [pd.DataFrame({"region_id": c["region_id"], "gpu_ms": c["gpu_ms"]})
                      for c in kept])
    gpu_of = dict(zip(rows["region_id"], rows["gpu_ms"]))
    med: dict[str, dict[str, np.ndarray]] = {}
    for k in names:
        g, w = [], []
        for i, (gpu, wall) in enumerate(blocks[k]):
            if gpu is None:
                gpu = [gpu_of[rid] for rid in rids[k][i]]
            g.append(np.median(gpu))
            w.append(np.median(wall) * 1e3)
        med[k] = {"gpu": np.array(g), "wall": np.array(w)}
    out: dict[str, Any] = {"gpu": torch.cuda.get_device_name(), "rounds": a.rounds,
                           "block": n, "bare_gpu_ms_p50": float(np.median(med["bare"]["gpu"])),
                           "bare_wall_ms_p50": float(np.median(med["bare"]["wall"])),
                           "arms": {}}
    for k in names[1:]:
        d: dict[str, Any] = {}
        for m in ("gpu", "wall"):
            ratio = med[k][m] / med["bare"][m]
            q1, q2, q3 = np.percentile(ratio, [25, 50, 75])
            d[f"{m}_ratio_p50"] = round(float(q2), 4)
            d[f"{m}_ratio_iqr"] = [round(float(q1), 4), round(float(q3), 4)]
            d[f"{m}_ms_p50"] = round(float(np.median(med[k][m])), 4)
        out["arms"][k] = d
    (a.out / "overhead_anatomy.json").write_text(json.dumps(out, indent=1))
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
