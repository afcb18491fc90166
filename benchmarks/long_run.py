"""Does memory stay bounded over a long recording? Records with a fixed gap for a given time
(virtual time on sim: an hour takes minutes), sampling RSS of this process (and of the sampler
process, if any) as it goes, then the peak including the final merge of the trace.

    python benchmarks/long_run.py --device sim:t4 --minutes 60 --out /tmp/long
    python benchmarks/long_run.py --device cuda:0 --minutes 9 --out /tmp/long   # a real GPU
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time
from pathlib import Path

import gpuwatch

PAGE = os.sysconf("SC_PAGE_SIZE")


def rss_mb(pid: int | str = "self") -> float | None:
    try:
        with open(f"/proc/{pid}/statm") as f:
            return int(f.read().split()[1]) * PAGE / 2**20
    except (OSError, ValueError, IndexError):
        return None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="sim:t4")
    ap.add_argument("--engine", default="builtin:small")
    ap.add_argument("--minutes", type=float, default=60.0)
    ap.add_argument("--gap", type=float, default=20.0, help="ms")
    ap.add_argument("--sample-hz", type=float, default=1000.0)
    ap.add_argument("--every-s", type=float, default=60.0, help="report every (recording) s")
    ap.add_argument("--out", required=True, help="directory for the trace and results")
    a = ap.parse_args()
    d = Path(a.out)
    d.mkdir(parents=True, exist_ok=True)
    trace = d / "long_run.parquet"
    rows = []
    wall0 = time.monotonic()
    with gpuwatch.session(a.device, trace, sample_hz=a.sample_hz, overwrite=True) as s:
        e = s.engine(a.engine)
        s.set_condition(f"gap={a.gap:g}ms", gap_ms=a.gap)
        t0 = s.clock.now_ns()
        end = t0 + int(a.minutes * 60e9)
        next_report = t0
        n = 0
        sampler_pid = getattr(s._sampler, "pid", None)
        while True:
            now = s.clock.now_ns()
            if now >= next_report:
                r = {"recording_s": round((now - t0) / 1e9, 1),
                     "wall_s": round(time.monotonic() - wall0, 1), "inferences": n,
                     "rss_mb": rss_mb(),
                     "sampler_rss_mb": rss_mb(sampler_pid) if sampler_pid else None}
                rows.append(r)
                print(json.dumps(r), file=sys.stderr, flush=True)
                next_report += int(a.every_s * 1e9)
            if now >= end:
                break
            e.infer()
            e.synchronize()
            n += 1
            s.wait(a.gap)
        before_close = rss_mb()
        wall_close = time.monotonic()
    close_s = time.monotonic() - wall_close
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    from gpuwatch.trace import LAST_HELPER_MERGE  # a big recording is merged by a helper process
    tr = gpuwatch.load(trace, columns={"samples": ["sm_clock_mhz"], "inferences": ["gpu_ms"]})
    rss = [r["rss_mb"] for r in rows if r["rss_mb"] is not None]
    tenth = rss[max(1, len(rss) // 10)] if len(rss) > 2 else rss[0]
    summary = {
        "device": a.device, "engine": a.engine, "minutes": a.minutes, "gap_ms": a.gap,
        "sample_hz": a.sample_hz, "simulated": tr.simulated,
        "inferences": len(tr.inferences), "samples": len(tr.samples),
        "trace_mb": round(trace.stat().st_size / 2**20, 1),
        "rss_mb_at_10pct": round(tenth, 1), "rss_mb_at_end": round(rss[-1], 1),
        "rss_mb_before_close": round(before_close or 0, 1),
        "growth_mb_10pct_to_end": round(rss[-1] - tenth, 1),
        "peak_rss_mb_incl_close": round(peak_mb, 1), "close_s": round(close_s, 1),
        "merge_helper_peak_rss_mb": LAST_HELPER_MERGE.get("peak_rss_mb"),
        "wall_s": round(time.monotonic() - wall0, 1),
        "sampler_rss_mb_at_end": rows[-1]["sampler_rss_mb"],
        "sampler": tr.meta.get("sampler", {}).get("mode"),
        "achieved_hz": tr.meta.get("sampler", {}).get("achieved_hz"),
    }
    (d / "long_run_rss.json").write_text(json.dumps(rows, indent=1))
    (d / "long_run_summary.json").write_text(json.dumps(summary, indent=1))
    print(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
