"""Where gpuwatch's wall time goes when inferences are separated by idle gaps: the stages of
one iteration, bare and under `s.infer`, interleaved in one process (the sampler on for both).

Per iteration, host clock reads (perf_counter_ns) split the wall time into
- pre:  from the loop's first clock read to just before the start event (gpuwatch: the trace's
        host_start_ns; bare: before `e0.record`),
- call: from there to just after the end event (the events and the user's call),
- post: from there until the timed call returns to the loop,
- sync: the program's own stream synchronise.
Reported: medians per arm and stage, and the differences (gpuwatch - bare) in microseconds.

    python benchmarks/probes/gap_anatomy.py --out DIR [--gap-ms 20] [--pairs 60] [--block 10]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

import gpuwatch


def bare_block(fn: Any, x: Any, n: int, gap_s: float) -> list[tuple[int, ...]]:
    import torch

    out = []
    stream = torch.cuda.current_stream()
    sync = stream.synchronize
    e0, e1 = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    clk = time.perf_counter_ns
    for _ in range(n):
        a = clk()
        e0.record(stream)
        b = clk()
        fn(x)
        e1.record(stream)
        c = clk()
        d = clk()
        sync()
        e = clk()
        out.append((a, a, c, d, e))  # (the event records count as "call", as in gpuwatch)
        e0.elapsed_time(e1)
        if gap_s:
            time.sleep(gap_s)
        del b
    return out


def gpuwatch_block(s: Any, fn: Any, x: Any, n: int, gap_s: float) -> list[tuple[int, ...]]:
    import torch

    out = []
    sync = torch.cuda.current_stream().synchronize
    clk = time.perf_counter_ns
    for _ in range(n):
        a = clk()
        s.infer(fn, x)
        d = clk()
        sync()
        e = clk()
        out.append((a, d, e))
        if gap_s:
            time.sleep(gap_s)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--gap-ms", type=float, default=20.0)
    ap.add_argument("--pairs", type=int, default=60)
    ap.add_argument("--block", type=int, default=10)
    a = ap.parse_args()
    import torch

    from gpuwatch.bindings.torch import convnet

    a.out.mkdir(parents=True, exist_ok=True)
    net, x = convnet()
    gap_s = a.gap_ms / 1e3
    rows: list[dict[str, Any]] = []
    loops: dict[int, list[tuple[int, ...]]] = {}
    trace = a.out / "gap_anatomy.parquet"
    with torch.inference_mode(), gpuwatch.session(out=trace, sample_hz=1000,
                                                  overwrite=True) as s:
        epoch = s.clock.counter()[1]
        bare_block(net, x, 20, 0)
        for p in range(a.pairs):
            order = ("bare", "gpuwatch") if p % 2 == 0 else ("gpuwatch", "bare")
            for arm in order:
                if arm == "bare":
                    for i, (t0, t1, t2, t3, t4) in enumerate(bare_block(net, x, a.block, gap_s)):
                        rows.append({"pair": p, "arm": "bare", "i": i, "pre_us": (t1 - t0) / 1e3,
                                     "call_us": (t2 - t1) / 1e3, "post_us": (t3 - t2) / 1e3,
                                     "sync_us": (t4 - t3) / 1e3, "wall_us": (t4 - t0) / 1e3})
                else:
                    s.set_condition(f"pair={p}")
                    loops[p] = gpuwatch_block(s, net, x, a.block, gap_s)
    inf = gpuwatch.load(trace).measured()
    for cond, g in inf.groupby("condition", sort=False):
        p = int(str(cond).split("=")[1])
        g = g.sort_values("iteration")
        for i, ((t0, t3, t4), h0, h1) in enumerate(zip(loops[p], g["host_start_ns"] - epoch,
                                                      g["host_enqueued_ns"] - epoch)):
            rows.append({"pair": p, "arm": "gpuwatch", "i": i, "pre_us": (h0 - t0) / 1e3,
                         "call_us": (h1 - h0) / 1e3, "post_us": (t3 - h1) / 1e3,
                         "sync_us": (t4 - t3) / 1e3, "wall_us": (t4 - t0) / 1e3})
    df = pd.DataFrame(rows)
    df.to_csv(a.out / "gap_anatomy.csv", index=False)
    stages = ["pre_us", "call_us", "post_us", "sync_us", "wall_us"]
    med = df.groupby("arm")[stages].median()
    first = df[df["i"] == 0].groupby("arm")[stages].median()  # the first of a block
    res = {"gpu": torch.cuda.get_device_name(), "args": {k: str(v) for k, v in vars(a).items()},
           "median_us": med.round(2).to_dict(orient="index"),
           "diff_us": (med.loc["gpuwatch"] - med.loc["bare"]).round(2).to_dict(),
           "first_of_block_median_us": first.round(2).to_dict(orient="index")}
    print(json.dumps(res, indent=1, default=str))
    (a.out / "gap_anatomy.json").write_text(json.dumps(res, indent=1, default=str))


if __name__ == "__main__":
    main()
