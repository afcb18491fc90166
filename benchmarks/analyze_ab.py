"""A/B of analysis time between two checkouts of gpuwatch, interleaved in one run.

Each pair analyses every trace once with checkout A and once with checkout B (in that order or
the reverse, alternating), each in a fresh child process with the checkout first on its path;
the child reports the CPU time (process_time) and wall time of `analyze(path).to_dict()`,
imports excluded, and its peak RSS (imports included). Prints and writes (--out) per trace the medians, and the B/A ratio's median
and IQR over the pairs.

    python benchmarks/analyze_ab.py --a /tmp/base --b . --pairs 5 --out ab.json TRACE...
    python benchmarks/analyze_ab.py --load ...   (gpuwatch.load(), every table read whole)
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

CHILD = """
import json, resource, sys, time, warnings
warnings.simplefilter("ignore")
import gpuwatch, gpuwatch.analysis
path = sys.argv[1]
c0, w0 = time.process_time(), time.perf_counter()
if sys.argv[2] == "load":  # (every table read whole, as a user's load() and .samples)
    from gpuwatch.trace import TABLES
    tr = gpuwatch.load(path)
    [len(getattr(tr, t)) for t in TABLES]
else:
    gpuwatch.analyze(path).to_dict()
print(json.dumps({"cpu_s": time.process_time() - c0, "wall_s": time.perf_counter() - w0,
                  "max_rss_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20,
                  "module": gpuwatch.analysis.__file__}))
"""


def one(checkout: Path, trace: str, what: str = "analyze") -> dict[str, float]:
    env = dict(os.environ, PYTHONPATH=str(checkout))
    r = subprocess.run([sys.executable, "-c", CHILD, trace, what], capture_output=True, text=True,
                       env=env, cwd=checkout, check=True)
    out = json.loads(r.stdout.strip().splitlines()[-1])
    assert out["module"].startswith(str(checkout)), out["module"]  # (the checkout asked for)
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--a", type=Path, required=True, help="checkout A (the baseline)")
    p.add_argument("--b", type=Path, required=True, help="checkout B")
    p.add_argument("--pairs", type=int, default=5)
    p.add_argument("--out", type=Path)
    p.add_argument("--load", action="store_true",
                   help="time gpuwatch.load(path) with every table read, not analyze()")
    p.add_argument("traces", nargs="+")
    args = p.parse_args()
    a, b = args.a.resolve(), args.b.resolve()
    results = {}
    for t in args.traces:
        t = str(Path(t).resolve())
        runs: dict[str, list[dict[str, float]]] = {"a": [], "b": []}
        for i in range(args.pairs):
            order = (("a", a), ("b", b)) if i % 2 == 0 else (("b", b), ("a", a))
            for name, co in order:
                runs[name].append(one(co, t, "load" if args.load else "analyze"))
        ratio = np.array([rb["cpu_s"] / ra["cpu_s"] for ra, rb in zip(runs["a"], runs["b"])])
        q1, q3 = np.percentile(ratio, [25, 75])
        results[t] = {
            "a_cpu_s_median": float(np.median([r["cpu_s"] for r in runs["a"]])),
            "b_cpu_s_median": float(np.median([r["cpu_s"] for r in runs["b"]])),
            "b_over_a_cpu_median": float(np.median(ratio)), "b_over_a_cpu_iqr": [q1, q3],
            "a_wall_s_median": float(np.median([r["wall_s"] for r in runs["a"]])),
            "b_wall_s_median": float(np.median([r["wall_s"] for r in runs["b"]])),
            "a_max_rss_gib_median": float(np.median([r["max_rss_gib"] for r in runs["a"]])),
            "b_max_rss_gib_median": float(np.median([r["max_rss_gib"] for r in runs["b"]])),
        }
        r = results[t]
        print(f"{Path(t).name:40s} A {r['a_cpu_s_median']:6.2f} s  B {r['b_cpu_s_median']:6.2f} s"
              f"  B/A {r['b_over_a_cpu_median']:.3f} (IQR {q1:.3f}-{q3:.3f}); peak "
              f"{r['a_max_rss_gib_median']:.2f} / {r['b_max_rss_gib_median']:.2f} GiB", flush=True)
    a_sum = sum(r["a_cpu_s_median"] for r in results.values())
    b_sum = sum(r["b_cpu_s_median"] for r in results.values())
    print(f"{'all':40s} A {a_sum:6.2f} s  B {b_sum:6.2f} s  B/A {b_sum / a_sum:.3f}")
    if args.out:
        args.out.write_text(json.dumps({"a": str(a), "b": str(b), "pairs": args.pairs,
                                        "traces": results, "a_cpu_s_sum": a_sum,
                                        "b_cpu_s_sum": b_sum}, indent=1))


if __name__ == "__main__":
    main()
