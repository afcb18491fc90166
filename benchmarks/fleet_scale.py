"""A fleet's analysis at scale (issue 31, part 4): `python -m gpuwatch analyze --json DIR` on
fleets of 20, 80 and 320 traces, against the README's DuckDB query (benchmarks/fleet/
stable_latency.sql) on the same directories, each in a child process: wall and CPU time and
the child's own peak RSS (os.wait4). Rounds interleave the fleet sizes and the two tools.

The traces are one real recording (`record --device sim:t4 --gap 0,5,20 --iters ITERS`)
hard-linked into N runs of a hive dataset (host=h<k>/gpu_model=<m>/run=r<k>/trace.parquet):
the same bytes N times, which is what the memory question needs (does it grow with N?).
Targets: 80 traces within 10% of 20 traces' peak RSS; time <= 1.5x DuckDB's.

    python benchmarks/fleet_scale.py --out DIR [--sizes 20,80,320] [--iters 3000] [--rounds 3]
        [--base OTHER_CHECKOUT]   # also that checkout's gpuwatch, interleaved: A/B
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

from analyze_speed import compiled  # (this folder is the script's: first on sys.path)

SQL = Path(__file__).parent / "fleet" / "stable_latency.sql"


def build(work: Path, sizes: list[int], iters: int) -> dict[int, Path]:
    """One recorded trace, linked into a fleet directory per size."""
    seed_dir = work / "seed"
    if not seed_dir.exists():
        subprocess.run([sys.executable, "-m", "gpuwatch", "record", "--device", "sim:t4", "--gap",
                        "0,5,20", "--iters", str(iters), "--dataset", str(seed_dir), "-q"],
                       check=True)
    trace = next(seed_dir.rglob("trace.parquet"))
    model = next(p.name for p in trace.parents if p.name.startswith("gpu_model="))
    roots = {}
    for n in sizes:
        root = work / f"fleet{n}" / "fleet"
        for k in range(n):
            d = root / f"host=h{k}" / model / f"run=r{k}"
            d.mkdir(parents=True, exist_ok=True)
            if not (d / "trace.parquet").exists():
                os.link(trace, d / "trace.parquet")
        roots[n] = root
    return roots


def child(argv: list[str], cwd: Path, env: dict[str, str] | None = None) -> dict[str, float]:
    t = time.perf_counter()
    p = subprocess.Popen(argv, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                         env=env)
    _, status, usage = os.wait4(p.pid, 0)
    wall = time.perf_counter() - t
    err = p.stderr.read().decode() if p.stderr else ""
    if status != 0:
        raise SystemExit(f"{argv} failed ({status}): {err[-2000:]}")
    return {"wall_s": wall, "cpu_s": usage.ru_utime + usage.ru_stime,
            "max_rss_gib": usage.ru_maxrss / 2**20}  # (KiB on Linux)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--sizes", default="20,80,320")
    ap.add_argument("--iters", type=int, default=3000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--base", type=Path, help="also time the gpuwatch of this checkout (its "
                    "root; compiled extension in place), interleaved, as `before`")
    args = ap.parse_args()
    sizes = [int(x) for x in args.sizes.split(",")]
    args.out.mkdir(parents=True, exist_ok=True)
    roots = build(args.out, sizes, args.iters)
    duck = [sys.executable, "-c", "import duckdb, sys; duckdb.sql(open(sys.argv[1]).read())"
            ".fetchall()", str(SQL)]
    compiled(sys.executable)  # (both checkouts' bytecode, as installed packages have it)
    if args.base:
        compiled(sys.executable, args.base.resolve())
    runs: dict[str, list[dict[str, float]]] = {}
    for r in range(args.rounds):
        for n in sizes:
            for tool in ("gpuwatch", "duckdb") + (("before",) if args.base else ()):
                argv = (duck if tool == "duckdb" else
                        [sys.executable, "-m", "gpuwatch", "analyze", "--json", "fleet"])
                env = (dict(os.environ, PYTHONPATH=str(args.base.resolve())) if tool == "before"
                       else None)
                res = child(argv, roots[n].parent, env)
                runs.setdefault(f"{tool}:{n}", []).append(res)
                print(f"round {r} {tool:8s} {n:4d} traces: {res['wall_s']:6.2f} s wall "
                      f"{res['cpu_s']:6.2f} s CPU {res['max_rss_gib']:.3f} GiB", flush=True)
    summary = {}
    for n in sizes:
        g, d = runs[f"gpuwatch:{n}"], runs[f"duckdb:{n}"]
        ratio = [a["cpu_s"] / b["cpu_s"] for a, b in zip(g, d)]
        summary[n] = {"gpuwatch_cpu_s_median": statistics.median(a["cpu_s"] for a in g),
                      "duckdb_cpu_s_median": statistics.median(b["cpu_s"] for b in d),
                      "cpu_ratio_median": statistics.median(ratio),
                      "cpu_ratio_min_max": [min(ratio), max(ratio)],
                      "gpuwatch_max_rss_gib_median": statistics.median(a["max_rss_gib"] for a in g),
                      "duckdb_max_rss_gib_median": statistics.median(b["max_rss_gib"] for b in d)}
        if args.base:
            b4 = runs[f"before:{n}"]
            ab = [a["cpu_s"] / b["cpu_s"] for a, b in zip(g, b4)]
            summary[n].update(before_cpu_s_median=statistics.median(b["cpu_s"] for b in b4),
                              cpu_over_before_median=statistics.median(ab),
                              cpu_over_before_min_max=[min(ab), max(ab)])
    base = summary[sizes[0]]["gpuwatch_max_rss_gib_median"]
    for n in sizes:
        summary[n]["rss_over_smallest"] = summary[n]["gpuwatch_max_rss_gib_median"] / base
        print(f"{n:4d} traces: gpuwatch/duckdb CPU {summary[n]['cpu_ratio_median']:.2f}x "
              f"(min {summary[n]['cpu_ratio_min_max'][0]:.2f}, max "
              f"{summary[n]['cpu_ratio_min_max'][1]:.2f}); peak RSS "
              f"{summary[n]['gpuwatch_max_rss_gib_median']:.3f} GiB "
              f"({summary[n]['rss_over_smallest']:.2f}x {sizes[0]} traces), DuckDB "
              f"{summary[n]['duckdb_max_rss_gib_median']:.3f} GiB")
    (args.out / "fleet_scale.json").write_text(json.dumps(
        {"machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                     "platform": platform.platform()},
         "iters": args.iters, "sizes": sizes, "runs": runs, "summary": summary}, indent=1))


if __name__ == "__main__":
    main()
