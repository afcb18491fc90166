"""What the issue-27 programs print and keep of their own clock: each request's call -> result
time, as the user measured it (perf_counter around the call and its result), for
user_vs_wall.py and truth.py. Not gpuwatch: the benchmark's side of the comparison."""

from __future__ import annotations


def report(log: list[tuple[int, float]], path: str | None) -> None:
    """Print the requests' p50/p90/p99 and, with `path`, write `end_ns,ms` per request."""
    ms = sorted(v for _, v in log)
    if ms:
        print(f"requests={len(ms)} p50={ms[len(ms) // 2]:.3f} p90={ms[int(len(ms) * 0.9)]:.3f} "
              f"p99={ms[int(len(ms) * 0.99)]:.3f} ms (call -> result, the user's own clock)",
              flush=True)
    if path:
        with open(path, "w") as f:
            f.write("end_ns,ms\n")
            f.writelines(f"{t},{v:.4f}\n" for t, v in log)
