"""Do gpuwatch's clocks, P-state and power agree with nvidia-smi, run beside it?

record:  runs `nvidia-smi --query-gpu=... --format=csv -lms 100` in the background while
         `python -m gpuwatch.record ARGS` runs, and keeps both outputs.
compare: for every nvidia-smi row, the gpuwatch sample nearest in time (within 5 ms; both
         are wall-clock based) and how often/closely they agree.

    python benchmarks/nvidia_smi.py record --trace T.parquet --smi S.csv -- --gap 0,20 --iters 800
    python benchmarks/nvidia_smi.py compare --trace T.parquet --smi S.csv
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

QUERY = "timestamp,clocks.sm,clocks.mem,pstate,power.draw,power.draw.instant"


def record(trace: Path, smi: Path, args: list[str]) -> int:
    with open(smi, "w") as f:
        proc = subprocess.Popen(["nvidia-smi", f"--query-gpu={QUERY}", "--format=csv,nounits",
                                 "-lms", "100", "-i", "0"], stdout=f)
        time.sleep(0.5)
        try:
            rc = subprocess.call([sys.executable, "-m", "gpuwatch.record", "--out", str(trace),
                                  *args])
        finally:
            time.sleep(0.5)
            proc.terminate()
            proc.wait()
    return rc


def compare(trace: Path, smi: Path, tolerance_ms: float = 5.0) -> pd.DataFrame:
    import gpuwatch

    tr = gpuwatch.load(trace)
    s = pd.read_csv(smi, skipinitialspace=True)
    s.columns = QUERY.split(",")  # nvidia-smi renames some in its header (clocks.current.sm)
    # nvidia-smi prints local time with millisecond resolution; the machine's zone is UTC
    # (checked: `date +%z` printed +0000 in the same run).
    t = pd.to_datetime(s["timestamp"], format="%Y/%m/%d %H:%M:%S.%f").dt.as_unit("ns")
    t = t.astype("int64")  # pandas 3 infers ms from the string: make it ns first
    s = s.assign(t_ns=t.astype("int64"),
                 smi_pstate=s["pstate"].str.lstrip("P").astype(int)).sort_values("t_ns")
    g = tr.samples[["t_ns", "sm_clock_mhz", "mem_clock_mhz", "pstate", "power_w",
                    "power_avg_w"]].dropna(subset=["sm_clock_mhz"]).astype("float64")
    g["t_ns"] = g["t_ns"].astype("int64")
    g = g.rename(columns={"pstate": "gw_pstate"})
    m = pd.merge_asof(s, g.sort_values("t_ns"), on="t_ns", direction="nearest",
                      tolerance=int(tolerance_ms * 1e6)).dropna(subset=["sm_clock_mhz"])
    inst = pd.to_numeric(m["power.draw.instant"], errors="coerce")
    avg = pd.to_numeric(m["power.draw"], errors="coerce")
    rows = [
        ("sm clock equal", float((m["clocks.sm"] == m["sm_clock_mhz"]).mean())),
        ("mem clock equal", float((m["clocks.mem"] == m["mem_clock_mhz"]).mean())),
        ("pstate equal", float((m["smi_pstate"] == m["gw_pstate"]).mean())),
        ("power.draw vs power_avg_w: median |diff| W", float((avg - m["power_avg_w"]).abs().median())),
        ("power.draw vs power_avg_w: median |diff| %",
         float(((avg - m["power_avg_w"]).abs() / avg).median() * 100)),
        ("power.draw.instant vs power_w: median |diff| W", float((inst - m["power_w"]).abs().median())),
        ("power.draw.instant vs power_w: median |diff| %",
         float(((inst - m["power_w"]).abs() / inst).median() * 100)),
        ("nvidia-smi rows matched", float(len(m))),
        ("nvidia-smi rows", float(len(s))),
        ("sm clock values seen (nvidia-smi)", float(m["clocks.sm"].nunique())),
    ]
    return pd.DataFrame(rows, columns=["check", "value"])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("what", choices=("record", "compare"))
    ap.add_argument("--trace", type=Path, required=True)
    ap.add_argument("--smi", type=Path, required=True)
    a, rest = ap.parse_known_args()
    if a.what == "record":
        raise SystemExit(record(a.trace, a.smi, [r for r in rest if r != "--"]))
    table = compare(a.trace, a.smi)
    print(table.to_string(index=False))


if __name__ == "__main__":
    main()
