"""Analysis at scale: a trace of 1 million inferences and 10 million samples, analysed by
`python -m gpuwatch.analyze` in a child process; wall time and peak memory (max RSS) recorded.

The trace is synthetic but in the real format: CONDITIONS gap conditions, each a staircase
(baseline, ramp, plateau) over its iterations, sampled at 1 kHz with the SM clock following the
latency, on one time base. Target (issue 4): under 10 s and 4 GB on a 2-core machine.

    python benchmarks/analyze_scale.py --out DIR [--inferences 1000000] [--samples 10000000]
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

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from gpuwatch.trace import (KIND, META_KEY, ROW_GROUP_ROWS, SCHEMA, SCHEMA_VERSION, STRING_COLUMNS,
                            TIME_COLUMNS, WRITE_OPTIONS)

GAPS = (0.0, 5.0, 10.0, 20.0, 50.0)


def _table(name: str, cols: dict[str, np.ndarray | list], n: int) -> pa.Table:
    arrays = []
    for f in SCHEMA:
        if f.name == KIND:
            arrays.append(pa.DictionaryArray.from_arrays(pa.array(np.zeros(n, np.int8)),
                                                         pa.array([name])))
        elif f.name in cols:
            arrays.append(pa.array(cols[f.name], type=f.type))
        else:
            arrays.append(pa.nulls(n, type=f.type))
    return pa.Table.from_arrays(arrays, schema=SCHEMA)


def make(path: Path, n_inf: int, n_smp: int, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    per = n_inf // len(GAPS)
    duration_ns = n_smp * 1_000_000  # 1 kHz
    slot = duration_ns // n_inf
    start = 1_790_000_000_000_000_000 + np.arange(n_inf, dtype=np.int64) * slot
    lat = np.empty(n_inf)
    cond, gap, it = [], np.empty(n_inf), np.empty(n_inf, np.int64)
    for k, g in enumerate(GAPS):
        sl = slice(k * per, (k + 1) * per)
        i = np.arange(per)
        onset, ramp = 0.25 * per / (1 + g / 20), 0.2 * per  # longer gaps jump earlier, go higher
        ratio = 1.0 if g < 20 else 1 + (g / 20) * np.clip((i - onset) / ramp, 0, 1)
        lat[sl] = 4.7 * ratio + rng.normal(0, 0.02, per)
        cond += [f"gap={g:g}ms"] * per
        gap[sl], it[sl] = g, i
    end = start + (lat * 1e6).astype(np.int64)
    inf = _table("inferences", {
        "gpu": np.zeros(n_inf, np.int16), "t_ns": start, "kind": ["inference"] * n_inf,
        "name": ["builtin:small"] * n_inf, "condition": cond, "gap_ms": gap, "iteration": it,
        "warmup": np.zeros(n_inf, bool), "start_ns": start, "end_ns": end, "gpu_ms": lat,
        "host_start_ns": start - 20_000, "host_enqueued_ns": start + 80_000,
        "host_end_ns": end + 15_000}, n_inf)
    t = start[0] - 1_000_000 + np.arange(n_smp, dtype=np.int64) * 1_000_000
    idx = np.clip(np.searchsorted(start, t) - 1, 0, n_inf - 1)
    clock = np.round(1590 * 4.7 / np.maximum(lat[idx], 4.7) / 15) * 15
    costly = (np.arange(n_smp) % 100) == 0
    smp = _table("samples", {
        "gpu": np.zeros(n_smp, np.int16), "t_ns": t, "poll_ns": np.full(n_smp, 50_000),
        "sm_clock_mhz": clock.astype(np.int32), "graphics_clock_mhz": clock.astype(np.int32),
        "mem_clock_mhz": np.full(n_smp, 5001, np.int32), "pstate": np.zeros(n_smp, np.int8),
        "clock_event_reasons": np.zeros(n_smp, np.int64),
        "power_w": 30 + 40 * clock / 1590 + rng.normal(0, 1, n_smp),
        "power_avg_w": 30 + 40 * clock / 1590,
        "temperature_c": np.where(costly, 50.0, np.nan)}, n_smp)
    meta = {"format": "gpuwatch-trace", "schema_version": SCHEMA_VERSION, "simulated": True,
            "status": "complete", "devices": [{"index": 0, "name": "synthetic", "simulated": True}],
            "options": {"synthetic": True, "inferences": n_inf, "samples": n_smp}}
    # (as gpuwatch writes a trace: trace._merge_chunks)
    with pq.ParquetWriter(path, SCHEMA.with_metadata({META_KEY: json.dumps(meta)}),
                          compression="zstd", use_dictionary=[KIND, *STRING_COLUMNS],
                          column_encoding={c: "DELTA_BINARY_PACKED" for c in TIME_COLUMNS},
                          **WRITE_OPTIONS) as w:  # (page checksums, where pyarrow has them)
        w.write_table(inf, row_group_size=ROW_GROUP_ROWS)
        w.write_table(smp, row_group_size=ROW_GROUP_ROWS)


def run(path: Path, out: Path) -> dict[str, float]:
    """One `python -m gpuwatch.analyze` child: its wall time and its own peak RSS (os.wait4
    reports the rusage of that child alone)."""
    with open(out, "w") as f:
        t0 = time.perf_counter()
        p = subprocess.Popen([sys.executable, "-m", "gpuwatch.analyze", str(path), "--json"],
                             stdout=f, stderr=subprocess.PIPE)
        _, status, usage = os.wait4(p.pid, 0)
        wall = time.perf_counter() - t0
    p.returncode = os.waitstatus_to_exitcode(status)
    if p.returncode != 0:
        raise SystemExit(p.stderr.read().decode() if p.stderr else "analyze failed")
    return {"wall_s": wall, "max_rss_gib": usage.ru_maxrss / 2**20,  # KiB on Linux
            "verdict": json.loads(out.read_text())["verdict"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0].replace("\n", " "))
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--inferences", type=int, default=1_000_000)
    ap.add_argument("--samples", type=int, default=10_000_000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--make-only", action="store_true",
                    help="write OUT/big.parquet and keep it; analyse nothing (without it, the "
                    "trace is removed once analysed)")
    a = ap.parse_args()
    a.out.mkdir(parents=True, exist_ok=True)
    path = a.out / "big.parquet"
    if a.make_only:
        make(path, a.inferences, a.samples)
        return
    # Generate in a child process: Linux keeps a process's peak RSS across fork+exec, so the
    # analysis children must be forked from a parent that never held the generator's arrays.
    t0 = time.perf_counter()
    subprocess.run([sys.executable, __file__, "--out", str(a.out), "--inferences",
                    str(a.inferences), "--samples", str(a.samples), "--make-only"], check=True)
    made = time.perf_counter() - t0
    runs = [run(path, a.out / "analysis.json") for _ in range(a.repeat)]
    walls = sorted(r["wall_s"] for r in runs)
    result = {
        "inferences": a.inferences, "samples": a.samples,
        "file_mib": path.stat().st_size / 2**20, "generate_s": made,
        "wall_s_median": walls[len(walls) // 2], "wall_s_min": walls[0], "wall_s_max": walls[-1],
        "max_rss_gib": max(r["max_rss_gib"] for r in runs), "cpus": os.cpu_count(),
        "python": platform.python_version(), "verdict": runs[0]["verdict"],
    }
    path.unlink()
    (a.out / "analyze_scale.json").write_text(json.dumps(result, indent=1))
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
