"""What a gpuwatch engine costs the user's own call -> result: `eng.infer(); eng.synchronize()`
timed by gpuwatch (events around the inference, the session told when the host learnt the
result) against the same engine's raw object untimed (`eng.raw.infer(); eng.raw.synchronize()`),
in interleaved blocks inside one session (sampler running for both arms), timed by the user's
own perf_counter around the two calls. Reported: the median of the per-pair ratio of block
medians, its IQR, and a bootstrap 95% interval of the median.

    python benchmarks/engine_overhead.py --out DIR [--spec torch:gpuwatch.bindings.torch:convnet]
        [--pairs 100] [--block 10] [--gap-ms 0]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

import gpuwatch


def block(call, n: int, gap_s: float) -> list[float]:
    out = []
    for _ in range(n):
        t0 = time.perf_counter_ns()
        call()
        out.append((time.perf_counter_ns() - t0) / 1e6)
        if gap_s:
            time.sleep(gap_s)
    return out


def ci_median(x: np.ndarray, rng: np.random.Generator) -> tuple[float, float]:
    b = np.median(rng.choice(x, (2000, x.size)), axis=1)
    return float(np.percentile(b, 2.5)), float(np.percentile(b, 97.5))


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--out", required=True)
    p.add_argument("--spec", default="torch:gpuwatch.bindings.torch:convnet")
    p.add_argument("--pairs", type=int, default=100)
    p.add_argument("--block", type=int, default=10)
    p.add_argument("--gap-ms", type=float, default=0.0)
    args = p.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    gap = args.gap_ms / 1e3
    rows = []
    with gpuwatch.session(out=out / "engine_overhead.parquet", overwrite=True) as s:
        eng = s.engine(args.spec)
        raw = eng.raw

        def timed() -> None:
            eng.infer()
            eng.synchronize()

        def bare() -> None:
            raw.infer()
            raw.synchronize()

        for _ in range(30):  # warm both paths
            timed()
            bare()
        for i in range(args.pairs):
            arms = [("gpuwatch", timed), ("bare", bare)]
            if i % 2:
                arms.reverse()
            med = {name: float(np.median(block(fn, args.block, gap))) for name, fn in arms}
            rows.append(med)
    g = np.array([r["gpuwatch"] for r in rows])
    b = np.array([r["bare"] for r in rows])
    ratio = g / b
    rng = np.random.default_rng(0)
    lo, hi = ci_median(ratio, rng)
    res = {"spec": args.spec, "gap_ms": args.gap_ms, "pairs": args.pairs, "block": args.block,
           "bare_ms_p50": float(np.median(b)), "gpuwatch_ms_p50": float(np.median(g)),
           "wall_ratio_p50": float(np.median(ratio)),
           "wall_ratio_iqr": [float(np.percentile(ratio, 25)), float(np.percentile(ratio, 75))],
           "wall_ratio_p50_ci95": [lo, hi],
           "extra_ms_p50": float(np.median(g - b))}
    (out / f"engine_overhead_gap{args.gap_ms:g}.json").write_text(json.dumps(res, indent=1))
    print(json.dumps(res))


if __name__ == "__main__":
    main()
