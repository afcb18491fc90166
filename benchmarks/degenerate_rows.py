"""Degenerate traces (issue 30): a real trace whose inferences table holds one row written
N times over (10 million by default: a few MB on disk, run-length encoded). Each command runs in
a child process; its wall time and its own peak RSS (os.wait4) are recorded.

Target: `analyze --json` under 1 GiB and in proportion to what the file says (one measurement
read once), not to its row count; `--perfetto` likewise.

    python benchmarks/degenerate_rows.py --out DIR [--rows 10000000] [--layout same|pairs]

`--layout pairs` writes two rows in turn (A B A B ...): no row repeats the one before it.
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
import pyarrow.compute as pc
import pyarrow.parquet as pq

from gpuwatch.trace import KIND, LEGACY_KIND, ROW_GROUP_ROWS

FIXTURE = Path(__file__).resolve().parents[1] / "tests" / "data" / \
    "h100_small_gap0_20_fixture.parquet"


def make(path: Path, rows: int, layout: str) -> None:
    """The fixture with `rows` more inference rows, copies of its first measured row (or of its
    first two, in turn), written after its own rows in row groups of ROW_GROUP_ROWS."""
    whole = pq.read_table(FIXTURE)
    kind = whole[KIND if KIND in whole.column_names else LEGACY_KIND].cast(pa.string())
    inf = whole.filter(pc.equal(kind, "inferences"))
    measured = inf.filter(pc.invert(inf["warmup"]))
    block = measured.take(np.zeros(ROW_GROUP_ROWS, dtype=np.int64) if layout == "same"
                          else np.tile([0, 1], ROW_GROUP_ROWS // 2))
    with pq.ParquetWriter(path, whole.schema) as w:
        for table in pc.unique(kind).to_pylist():  # (row groups of one table each, as gpuwatch's)
            w.write_table(whole.filter(pc.equal(kind, table)), row_group_size=ROW_GROUP_ROWS)
        left = rows
        while left > 0:
            part = block.slice(0, min(left, block.num_rows))
            w.write_table(part, row_group_size=ROW_GROUP_ROWS)
            left -= part.num_rows


def run(argv: list[str], out: Path) -> dict[str, object]:
    """One `python -m gpuwatch.analyze` child: exit status, wall time, peak RSS, last line."""
    with open(out, "w") as f:
        t0 = time.perf_counter()
        p = subprocess.Popen([sys.executable, "-m", "gpuwatch.analyze", *argv], stdout=f,
                             stderr=subprocess.PIPE)
        _, status, usage = os.wait4(p.pid, 0)
        wall = time.perf_counter() - t0
    err = p.stderr.read().decode() if p.stderr else ""
    return {"argv": argv[1:], "exit": os.waitstatus_to_exitcode(status), "wall_s": round(wall, 2),
            "max_rss_gib": round(usage.ru_maxrss / 2**20, 3),  # (KiB on Linux)
            "stderr": err.strip().splitlines()[-3:]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--rows", type=int, default=10_000_000)
    ap.add_argument("--layout", choices=("same", "pairs"), default="same")
    ap.add_argument("--make-only", action="store_true", help=argparse.SUPPRESS)
    a = ap.parse_args()
    a.out.mkdir(parents=True, exist_ok=True)
    path = a.out / f"degenerate_{a.layout}.parquet"
    if a.make_only:
        make(path, a.rows, a.layout)
        return
    # (made in a child: Linux keeps a process's peak RSS across fork+exec)
    subprocess.run([sys.executable, __file__, "--out", str(a.out), "--rows", str(a.rows),
                    "--layout", a.layout, "--make-only"], check=True)
    runs = [run([str(path), "--json"], a.out / "analysis.json"),
            run([str(path), "--perfetto", str(a.out / "trace.perfetto")], a.out / "text.txt")]
    try:
        verdict = json.loads((a.out / "analysis.json").read_text())
        notes = verdict.get("data_notes", [])
    except ValueError:
        notes = []
    result = {"rows": a.rows, "layout": a.layout, "file_mib": round(path.stat().st_size / 2**20, 2),
              "runs": runs, "data_notes": notes, "cpus": os.cpu_count(),
              "python": platform.python_version()}
    path.unlink()
    (a.out / f"degenerate_{a.layout}.json").write_text(json.dumps(result, indent=1))
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
