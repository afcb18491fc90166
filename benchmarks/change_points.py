"""gpuwatch's change-point search (analysis/_segment.c) against ruptures' own, interleaved.

The same PELT search for the linear kernel, on the series analysis gives it: a block-median
series of MAX_POINTS (2,000) points with a few steps (each condition of a long run), and the
~300-point windows _refined searches again around each change. Each round times both searches
on the same series, in alternating order; reported per shape: the median time of each and the
ratio's median and IQR over the rounds. The paths are checked equal as they are timed.

    python benchmarks/change_points.py --out FILE [--rounds 30]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time

import numpy as np


def _series(rng: np.random.Generator, n: int) -> np.ndarray:
    steps = np.repeat(rng.normal(0, 3, 6), -(-n // 6))[:n]
    return np.ascontiguousarray(steps + rng.normal(size=n), dtype=np.float64).reshape(-1, 1)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("--rounds", type=int, default=30)
    args = ap.parse_args()
    from gpuwatch.analysis import _segment, layers

    os.environ["GPUWATCH_NATIVE"] = "0"
    layers._PELT = None
    theirs = layers._pelt_l2()
    del os.environ["GPUWATCH_NATIVE"]
    ours = _segment.pelt_l2
    rng = np.random.default_rng(0)
    out: dict[str, object] = {"machine": f"{platform.processor() or platform.machine()}, "
                                         f"{os.cpu_count()} CPUs", "rounds": args.rounds}
    for name, n, min_size, reps in (("2000 points, min_size 2", 2000, 2, 5),
                                    ("300 points, min_size 5", 300, 5, 100)):
        t_ours, t_theirs = [], []
        for r in range(args.rounds):
            y = _series(rng, n)
            pen = 20.0 * float(np.var(np.diff(y[:, 0]))) / 2 * np.log(n)
            for f, acc in ((ours, t_ours), (theirs, t_theirs))[:: 1 if r % 2 else -1]:
                t0 = time.perf_counter()
                for _ in range(reps):
                    path = list(f(y, pen, min_size))
                acc.append((time.perf_counter() - t0) / reps)
            assert list(ours(y, pen, min_size)) == list(theirs(y, pen, min_size)) == path
        ratio = np.array(t_ours) / np.array(t_theirs)
        row = {"ours_ms": 1e3 * float(np.median(t_ours)),
               "ruptures_ms": 1e3 * float(np.median(t_theirs)),
               "ratio_median": float(np.median(ratio)),
               "ratio_iqr": [float(np.percentile(ratio, 25)), float(np.percentile(ratio, 75))]}
        out[name] = row
        print(f"{name}: ours {row['ours_ms']:.2f} ms, ruptures {row['ruptures_ms']:.2f} ms, "
              f"ratio {row['ratio_median']:.3f} (IQR {row['ratio_iqr'][0]:.3f}-"
              f"{row['ratio_iqr'][1]:.3f})")
    with open(args.out, "w") as f:
        json.dump(out, f, indent=1)


if __name__ == "__main__":
    main()
