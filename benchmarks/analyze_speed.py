"""Offline analysis against a database engine, side by side on one file (issue 17).

Builds the analyze_scale trace (1M inferences, 10M samples at 1 kHz, zstd Parquet), then runs,
each in a child process of its own and in rotating order, ROUNDS times:
- gpuwatch: `python -m gpuwatch.analyze big.parquet --json`, and the same with `--html`;
- gpuwatch load(): the columns analysis reads, nothing else;
- DuckDB: the same question asked in SQL (inferences ASOF-joined onto the samples, then the
  median latency and SM clock per condition), the baseline the issue names;
- pandas: read_parquet + merge_asof + groupby median, the same question.
Per run: CPU time (user + system, from the child's own rusage) and peak memory (max RSS).
Reported: medians over rounds and the ratios the issue sets targets for.

    python benchmarks/analyze_speed.py --out DIR [--rounds 3] [--inferences 1000000]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent

DUCKDB = """
import sys, duckdb
p = sys.argv[1]
con = duckdb.connect()
print(con.sql(f'''
WITH inf AS (SELECT t_ns, condition, gpu_ms FROM read_parquet('{p}') WHERE table_name = 'inferences'),
     smp AS (SELECT t_ns, sm_clock_mhz FROM read_parquet('{p}') WHERE table_name = 'samples')
SELECT condition, median(gpu_ms) AS gpu_ms_p50, median(sm_clock_mhz) AS sm_clock_p50, count(*) AS n
FROM inf ASOF JOIN smp ON inf.t_ns >= smp.t_ns GROUP BY condition ORDER BY condition
''').fetchall())
"""

PANDAS = """
import sys, pandas as pd, pyarrow.parquet as pq, pyarrow.compute as pc
t = pq.read_table(sys.argv[1], columns=["table_name", "t_ns", "condition", "gpu_ms", "sm_clock_mhz"])
kind = t["table_name"].cast("string")
inf = t.filter(pc.equal(kind, "inferences")).select(["t_ns", "condition", "gpu_ms"]).to_pandas()
smp = t.filter(pc.equal(kind, "samples")).select(["t_ns", "sm_clock_mhz"]).to_pandas()
del t
m = pd.merge_asof(inf.sort_values("t_ns"), smp, on="t_ns")
print(m.groupby("condition")[["gpu_ms", "sm_clock_mhz"]].median())
"""

LOAD = """
import sys, gpuwatch
from gpuwatch.analysis import SAMPLE_COLUMNS
tr = gpuwatch.load(sys.argv[1], columns={"samples": SAMPLE_COLUMNS}, numpy_dtypes=("samples",))
print(len(tr.inferences), len(tr.samples))
"""


def child(argv: list[str], out: Path) -> dict[str, float]:
    """Run one child; its CPU seconds (user + system) and peak RSS (GiB), from os.wait4."""
    with open(out, "w") as f:
        t0 = time.perf_counter()
        p = subprocess.Popen(argv, stdout=f, stderr=subprocess.PIPE)
        _, status, usage = os.wait4(p.pid, 0)
        wall = time.perf_counter() - t0
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{argv[:4]} failed: {p.stderr.read().decode() if p.stderr else ''}")
    return {"cpu_s": usage.ru_utime + usage.ru_stime, "user_s": usage.ru_utime,
            "sys_s": usage.ru_stime, "wall_s": wall, "max_rss_gib": usage.ru_maxrss / 2**20}


def compiled(py: str, root: Path | None = None) -> None:
    """gpuwatch's bytecode written before any timed run, as an installed package has it (pip
    compiles what it installs): under PYTHONDONTWRITEBYTECODE, set on some machines, an
    editable checkout's modules would otherwise be compiled from source in every run, ~0.1 s
    of CPU that no user pays and the other arms do not."""
    code = "import gpuwatch, pathlib; print(pathlib.Path(gpuwatch.__file__).parent)"
    env = None if root is None else dict(os.environ, PYTHONPATH=str(root))
    pkg = subprocess.run([py, "-c", code], capture_output=True, text=True, check=True,
                         cwd=root, env=env).stdout.strip()
    subprocess.run([py, "-m", "compileall", "-q", pkg], check=True, stdout=subprocess.DEVNULL)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--inferences", type=int, default=1_000_000)
    ap.add_argument("--samples", type=int, default=10_000_000)
    ap.add_argument("--keep", action="store_true", help="keep the generated trace")
    a = ap.parse_args()
    a.out.mkdir(parents=True, exist_ok=True)
    big = a.out / "big.parquet"
    if not big.exists():  # (made in a child: a parent that held the arrays would pass its peak RSS on)
        subprocess.run([sys.executable, str(HERE / "analyze_scale.py"), "--out", str(a.out),
                        "--inferences", str(a.inferences), "--samples", str(a.samples),
                        "--make-only"], check=True)
    py = sys.executable
    compiled(py)
    arms: dict[str, list[str]] = {
        "gpuwatch analyze --json": [py, "-m", "gpuwatch.analyze", str(big), "--json"],
        "gpuwatch analyze --html": [py, "-m", "gpuwatch.analyze", str(big), "--html",
                                    str(a.out / "report.html"), "-f"],  # (each round's over)
        "gpuwatch load()": [py, "-c", LOAD, str(big)],
        "duckdb": [py, "-c", DUCKDB, str(big)],
        "pandas merge_asof": [py, "-c", PANDAS, str(big)],
    }
    runs: dict[str, list[dict[str, float]]] = {k: [] for k in arms}
    names = list(arms)
    for r in range(a.rounds):
        order = names[r % len(names):] + names[:r % len(names)]
        for name in order:
            runs[name].append(child(arms[name], a.out / f"{name.split()[0]}.out"))
            print(f"round {r}: {name}: {runs[name][-1]}", flush=True)

    def med(name: str, key: str) -> float:
        v = sorted(x[key] for x in runs[name])
        return v[len(v) // 2]

    summary: dict[str, Any] = {
        name: {k: round(med(name, k), 3) for k in ("cpu_s", "user_s", "sys_s", "wall_s",
                                                    "max_rss_gib")} for name in arms}
    js, html, duck = (summary["gpuwatch analyze --json"], summary["gpuwatch analyze --html"],
                      summary["duckdb"])
    ratios = {"json_cpu_over_duckdb": round(js["cpu_s"] / duck["cpu_s"], 2),
              "html_cpu_over_json": round(html["cpu_s"] / js["cpu_s"], 2),
              "json_peak_gib": js["max_rss_gib"],
              "load_cpu_s": summary["gpuwatch load()"]["cpu_s"]}
    targets = {"json_cpu_over_duckdb": 1.5, "html_cpu_over_json": 1.3, "json_peak_gib": 1.0,
               "load_cpu_s": 1.0}
    result = {"inferences": a.inferences, "samples": a.samples,
              "file_mib": round(big.stat().st_size / 2**20, 1), "rounds": a.rounds,
              "cpus": os.cpu_count(), "python": platform.python_version(),
              "medians": summary, "ratios": ratios, "targets": targets,
              "met": {k: ratios[k] <= targets[k] for k in targets}, "runs": runs}
    if not a.keep:
        big.unlink()
    (a.out / "analyze_speed.json").write_text(json.dumps(result, indent=1))
    print(json.dumps({k: result[k] for k in ("medians", "ratios", "targets", "met")}, indent=1))


if __name__ == "__main__":
    main()
