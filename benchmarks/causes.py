"""Make a real cause of slow inference on purpose, beside a recording (DEVICE.md lists them):

    python3 benchmarks/causes.py gemm --delay 4 --seconds 60   # a co-tenant looping fp16 GEMMs
    python3 benchmarks/causes.py copy --delay 4 --seconds 60   # a memory-bound co-tenant (D2D copies)
    python3 benchmarks/causes.py cpu --procs 40 --delay 4 --seconds 4   # busy-looping processes
    python3 benchmarks/causes.py light --delay 5 --seconds 10  # a light co-tenant service: a small
        # MLP (batch 8, 6 x 512-wide fp16 Linear+ReLU: a few of the SMs) called in a loop, each
        # call waited for, then a --sleep-ms pause (1 ms)

It waits --delay seconds (from when --go-file exists, if given), runs the load for --seconds
(or until SIGTERM), and prints when the load started and stopped (epoch ns) so a trace can be
checked against the truth (a GPU load also when its GPU work began, after torch's start-up:
gpu_start_ns). GPU loads use torch on GPU 0 (CUDA_VISIBLE_DEVICES picks another). `light`
starts torch and warms its model up first (ready_ns), so its start_ns is when its GPU work
began.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import signal
import sys
import time


def _spin(until_ns: int) -> None:
    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # (not the parent's handler: it prints)
    x = 0
    while time.time_ns() < until_ns:
        x += 1


def _light_model(width: int = 512, layers: int = 6, batch: int = 8) -> tuple[object, object]:
    """A light service's model: batch-`batch` MLP of `layers` fp16 Linear+ReLU, warmed up."""
    import torch

    mods = []
    for _ in range(layers):
        mods += [torch.nn.Linear(width, width), torch.nn.ReLU()]
    model = torch.nn.Sequential(*mods).cuda().half().eval()
    x = torch.randn(batch, width, device="cuda", dtype=torch.half)
    with torch.inference_mode():
        for _ in range(20):
            model(x)
    torch.cuda.synchronize()
    return model, x


def _light_loop(model: object, x: object, until_ns: int, sleep_s: float) -> int:
    """Serve: one call, wait for its result, pause `sleep_s`; until `until_ns`."""
    import torch

    n = 0
    with torch.inference_mode():
        while time.time_ns() < until_ns:
            model(x)  # type: ignore[operator]
            torch.cuda.synchronize()
            n += 1
            if sleep_s > 0:
                time.sleep(sleep_s)
    return n


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
    ap.add_argument("kind", choices=["gemm", "copy", "cpu", "light"])
    ap.add_argument("--delay", type=float, default=0.0, help="seconds to wait before the load")
    ap.add_argument("--seconds", type=float, default=10.0, help="how long the load runs")
    ap.add_argument("--procs", type=int, default=os.cpu_count() or 1,
                    help="busy processes for 'cpu' (default: one per core)")
    ap.add_argument("--sleep-ms", type=float, default=1.0,
                    help="'light': the pause after each call, ms (default 1)")
    ap.add_argument("--width", type=int, default=512, help="'light': the MLP's width (512)")
    ap.add_argument("--go-file", default=None,
                    help="count --delay from when this file exists (after 'light' is ready), "
                         "not from the start: a script touches it when the recording is running")
    a = ap.parse_args()
    started: list[str] = []  # the load's kind, once it started

    def _term(*_: object) -> None:  # stopped from outside: when, if the load had started
        if started:
            print(f"cause {started[0]} end_ns={time.time_ns()} stopped by SIGTERM", flush=True)
        sys.exit(0)

    signal.signal(signal.SIGTERM, _term)
    t0 = time.monotonic()
    light: tuple[object, object] | None = None
    if a.kind == "light":  # torch's start-up and the warm-up within the delay
        light = _light_model(a.width)
        print(f"cause light ready_ns={time.time_ns()} pid={os.getpid()}", flush=True)
    if a.go_file:
        give_up = time.monotonic() + 300
        while not os.path.exists(a.go_file):
            if time.monotonic() > give_up:
                print(f"cause {a.kind} no go file {a.go_file} in 300 s: not started", flush=True)
                return 1
            time.sleep(0.02)
        t0 = time.monotonic()
        print(f"cause {a.kind} go_ns={time.time_ns()}", flush=True)
    time.sleep(max(0.0, a.delay - (time.monotonic() - t0)))
    start = time.time_ns()
    until = start + int(a.seconds * 1e9)
    print(f"cause {a.kind} start_ns={start} pid={os.getpid()}", flush=True)
    started.append(a.kind)
    if a.kind == "cpu":
        procs = [mp.Process(target=_spin, args=(until,), daemon=True) for _ in range(a.procs)]
        for p in procs:
            p.start()
        for p in procs:
            p.join()
        work = f"procs={a.procs}"
    elif light is not None:
        work = f"calls={_light_loop(*light, until, a.sleep_ms / 1e3)} sleep_ms={a.sleep_ms:g} " \
               f"width={a.width}"
    else:
        work = f"steps={_gpu_loop(a.kind, until)}"
    print(f"cause {a.kind} end_ns={time.time_ns()} {work}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
