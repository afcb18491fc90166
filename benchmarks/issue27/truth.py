"""What each issue-27 recording should show, from its truth alone (no gpuwatch analysis): the
user's call -> result latency before, during and after the cause's window (CASE.cause.txt), from
the program's own clock (CASE.latency.csv) where it kept one, and the trace's event time
(gpu_ms) and, where the host's result time was recorded, host_end - host_start.

    python3 benchmarks/issue27/truth.py DIR        # DIR holds CASE.parquet, CASE.cause.txt, ...
"""
from __future__ import annotations

import csv
import re
import sys
from pathlib import Path


def window(cause: Path) -> tuple[int, int] | None:
    """(start, end) epoch ns of the cause: the first start_ns and the last end_ns of a cause
    line that is not a whole-run condition (sched=...)."""
    starts, ends = [], []
    for line in cause.read_text(errors="replace").splitlines():
        if not line.startswith("cause ") or line.startswith("cause sched="):
            continue
        m = re.search(r"\bstart_ns=(\d+)", line)
        if m:
            starts.append(int(m.group(1)))
        m = re.search(r"\bend_ns=(\d+)", line)
        if m:
            ends.append(int(m.group(1)))
    return (min(starts), max(ends)) if starts and ends else None


def pct(v: list[float]) -> str:
    if not v:
        return "n=0"
    v = sorted(v)
    q = lambda p: v[min(len(v) - 1, int(len(v) * p))]  # noqa: E731
    return f"n={len(v)} p50={q(0.5):.3f} p90={q(0.9):.3f} p99={q(0.99):.3f} ms"


def phases(rows: list[tuple[int, float]], w: tuple[int, int]) -> str:
    a, b = w
    parts = {"before": [m for t, m in rows if t < a], "during": [m for t, m in rows if a <= t < b],
             "after": [m for t, m in rows if t >= b]}
    return "; ".join(f"{k}: {pct(v)}" for k, v in parts.items())


def main(d: Path) -> None:
    for cause in sorted(d.glob("*.cause.txt")):
        case = cause.name[:-len(".cause.txt")]
        print(f"== {case}")
        sched = [ln for ln in cause.read_text(errors="replace").splitlines()
                 if ln.startswith("cause sched=")]
        for ln in sched:
            print("  " + ln)
        w = window(cause)
        if w is None:
            if not sched:
                print("  no cause window found in", cause.name)
            continue
        print(f"  cause window {(w[1] - w[0]) / 1e9:.2f} s")
        lat = d / f"{case}.latency.csv"
        if lat.exists():
            with lat.open() as f:
                rows = [(int(r["end_ns"]), float(r["ms"])) for r in csv.DictReader(f)]
            print("  user's clock, call -> result:", phases(rows, w))
        trace = d / f"{case}.parquet"
        if not trace.exists():
            print("  no trace")
            continue
        try:
            import gpuwatch

            inf = gpuwatch.load(str(trace)).inferences
        except Exception as e:  # (a trace that did not load: say so, go on)
            print(f"  trace did not load: {type(e).__name__}: {e}")
            continue
        inf = inf[~inf["warmup"].fillna(False).astype(bool)]
        for (kind, name), g in inf.groupby(["kind", "name"], sort=False):
            t = g["end_ns"].astype("int64").tolist()
            print(f"  trace {kind} {name}: gpu_ms {phases(list(zip(t, g['gpu_ms'].tolist())), w)}")
            h = g.dropna(subset=["host_end_ns", "host_start_ns"])
            if len(h):
                ms = ((h["host_end_ns"] - h["host_start_ns"]) / 1e6).tolist()
                print(f"  trace {kind} {name}: host_end - host_start "
                      f"{phases(list(zip(h['host_end_ns'].astype('int64').tolist(), ms)), w)}")


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "."))
