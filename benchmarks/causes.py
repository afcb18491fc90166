"""Make a real cause of slow inference on purpose, beside a recording (DEVICE.md lists them):

    python3 benchmarks/causes.py gemm --delay 4 --seconds 60   # a co-tenant looping fp16 GEMMs
    python3 benchmarks/causes.py copy --delay 4 --seconds 60   # a memory-bound co-tenant (D2D copies)
    python3 benchmarks/causes.py cpu --procs 40 --delay 4 --seconds 4   # busy-looping processes

It waits --delay seconds, runs the load for --seconds (or until SIGTERM), and prints when the
load started and stopped (epoch ns) so a trace can be checked against the truth (a GPU load
also when its GPU work began, after torch's start-up: gpu_start_ns). GPU loads use
torch on GPU 0 (CUDA_VISIBLE_DEVICES picks another).
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import signal
import sys
import time


def _spin(until_ns: int) -> None:
    x = 0
    while time.time_ns() < until_ns:
        x += 1


def _gpu_loop(kind: str, until_ns: int) -> int:
    import torch

    if kind == "gemm":
        a = torch.randn(8192, 8192, device="cuda", dtype=torch.half)
        b = torch.randn(8192, 8192, device="cuda", dtype=torch.half)

        def step() -> None:
            torch.mm(a, b)
    else:  # 1 GiB device-to-device copies: memory-bound, hardly clock-sensitive
        src = torch.empty(1 << 30, device="cuda", dtype=torch.uint8)
        dst = torch.empty_like(src)

        def step() -> None:
            dst.copy_(src)
    torch.cuda.synchronize()
    print(f"cause {kind} gpu_start_ns={time.time_ns()}", flush=True)  # its GPU work begins
    n = 0
    while time.time_ns() < until_ns:
        for _ in range(8):
            step()
        torch.cuda.synchronize()
        n += 8
    return n


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("kind", choices=["gemm", "copy", "cpu"])
    ap.add_argument("--delay", type=float, default=0.0, help="seconds to wait before the load")
    ap.add_argument("--seconds", type=float, default=10.0, help="how long the load runs")
    ap.add_argument("--procs", type=int, default=os.cpu_count() or 1,
                    help="busy processes for 'cpu' (default: one per core)")
    a = ap.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    time.sleep(a.delay)
    start = time.time_ns()
    until = start + int(a.seconds * 1e9)
    print(f"cause {a.kind} start_ns={start} pid={os.getpid()}", flush=True)
    if a.kind == "cpu":
        procs = [mp.Process(target=_spin, args=(until,), daemon=True) for _ in range(a.procs)]
        for p in procs:
            p.start()
        for p in procs:
            p.join()
        work = f"procs={a.procs}"
    else:
        work = f"steps={_gpu_loop(a.kind, until)}"
    print(f"cause {a.kind} end_ns={time.time_ns()} {work}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
