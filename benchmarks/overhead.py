"""Sampler overhead: inference latency with the sampler running vs paused, interleaved blocks.

For each workload and each sampler mode, one session runs 2*PAIRS blocks of BLOCK back-to-back
inferences, the sampler paused in one block of each pair and running in the other (ABBA order,
so drift and warm-up cancel). Per block: median CUDA-event latency (gpu_ms) and median host
wall time per inference (host_end - host_start: includes launch and sync, where GIL contention
shows). Per pair: on/off ratio of the block medians. Reported: median ratio and its IQR.

    python benchmarks/overhead.py --out DIR [--pairs 20] [--block 100] [--hz 1000]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pandas as pd

import gpuwatch

WORKLOADS = {
    "builtin:small": ("builtin:small", False),
    "torch convnet eager": ("torch:gpuwatch.bindings.torch:convnet", False),
}


def run(workload: str, mode: str, out: Path, pairs: int, block: int, hz: float,
        device: str = "cuda:0", what: str = "sampler") -> pd.DataFrame:
    """`what`: toggle the telemetry sampler, or CUPTI kernel tracing (sampler left running)."""
    spec, graph = WORKLOADS[workload]
    trace = out / f"overhead_{what}_{mode}_{workload.split()[0].replace(':', '_')}.parquet"
    kernels = what == "kernels"
    with gpuwatch.session(device, trace, sampler=mode, sample_hz=hz, kernels=kernels,
                          overwrite=True) as s:
        pause, resume = ((s.pause_kernel_tracing, s.resume_kernel_tracing) if kernels
                         else (s.pause_sampling, s.resume_sampling))
        e = s.engine(spec, cuda_graph=graph)
        s.warmup = True
        for _ in range(50):
            e.infer()
            e.synchronize()
        s.warmup = False
        for b in range(2 * pairs):
            on = b % 4 in (1, 2)  # off, on, on, off, ...
            (resume if on else pause)()
            s.set_condition(f"block={b} {what}={'on' if on else 'off'}")
            for _ in range(block):
                e.infer()
                e.synchronize()  # the program waits for each result (host_end_ns)
        resume()
    inf = gpuwatch.load(trace).measured()
    inf = inf.assign(host_ms=(inf["host_end_ns"] - inf["host_start_ns"]) / 1e6)
    rows = []
    for cond, g in inf.groupby("condition", sort=False):
        b = int(cond.split()[0].split("=")[1])
        rows.append({"workload": workload, "sampler": mode, "toggled": what, "block": b,
                     "pair": b // 2,
                     "on": cond.endswith("on"), "gpu_ms_p50": g["gpu_ms"].median(),
                     "host_ms_p50": g["host_ms"].median()})
    return pd.DataFrame(rows)


def summarise(blocks: pd.DataFrame) -> pd.DataFrame:
    out = []
    for (w, m), g in blocks.groupby(["workload", "sampler"], sort=False):
        piv = g.pivot(index="pair", columns="on", values=["gpu_ms_p50", "host_ms_p50"])
        row = {"workload": w, "sampler": m, "toggled": g["toggled"].iloc[0], "pairs": len(piv)}
        for col in ("gpu_ms_p50", "host_ms_p50"):
            ratio = (piv[(col, True)] / piv[(col, False)]).to_numpy()
            q1, q2, q3 = np.percentile(ratio, [25, 50, 75])
            row[f"{col.split('_')[0]}_off_ms"] = float(piv[(col, False)].median())
            row[f"{col.split('_')[0]}_on_ms"] = float(piv[(col, True)].median())
            row[f"{col.split('_')[0]}_overhead_pct"] = (q2 - 1) * 100
            row[f"{col.split('_')[0]}_overhead_iqr_pct"] = f"{(q1 - 1) * 100:+.2f}..{(q3 - 1) * 100:+.2f}"
        out.append(row)
    return pd.DataFrame(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--pairs", type=int, default=20)
    ap.add_argument("--block", type=int, default=100)
    ap.add_argument("--hz", type=float, default=1000.0)
    ap.add_argument("--workloads", default=",".join(WORKLOADS))
    ap.add_argument("--modes", default="thread,process")
    ap.add_argument("--device", default="cuda:0", help="sim:flat for a dry run")
    ap.add_argument("--what", choices=("sampler", "kernels"), default="sampler",
                    help="what to switch on and off: the sampler, or CUPTI kernel tracing")
    a = ap.parse_args()
    a.out.mkdir(parents=True, exist_ok=True)
    blocks = []
    for w in a.workloads.split(","):
        for mode in a.modes.split(","):
            blocks.append(run(w, mode, a.out, a.pairs, a.block, a.hz, a.device, a.what))
            print(f"done: {w} / {mode}", flush=True)
    blocks_df = pd.concat(blocks)
    blocks_df.to_csv(a.out / f"overhead_{a.what}_blocks.csv", index=False)
    summary = summarise(blocks_df)
    summary.to_csv(a.out / f"overhead_{a.what}_summary.csv", index=False)
    print(summary.to_string(index=False))
    (a.out / "overhead_args.json").write_text(json.dumps(vars(a), default=str))


if __name__ == "__main__":
    main()
