"""A small model service written with no thought of gpuwatch: an MLP at batch 1 answering one
request at a time, each request marked with an NVTX range (as a team marks its work for Nsight),
the result copied to the host inside it (`.cpu()`), then a pause before the next.

    python mlp_app.py --seconds 20 --gap-ms 5                       # the program itself
    python -m gpuwatch run -q --sample-hz 200 -o app.parquet mlp_app.py --seconds 20 --gap-ms 5

Under `gpuwatch run` each `request` range is one region (`nvtx:request`), ending when the host
has the result. Prints "serving" when its measured loop starts; --latency-log writes the user's
own per-request latency (CSV: epoch ns at the result, ms).
"""
import argparse
import time

import torch

from userclock import report  # (the benchmark's own clock, beside this file)


def build(layers: int, width: int):
    mods = []
    for _ in range(layers):
        mods += [torch.nn.Linear(width, width), torch.nn.ReLU()]
    return torch.nn.Sequential(*mods).cuda().half().eval()


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--seconds", type=float, default=20.0)
    p.add_argument("--gap-ms", type=float, default=5.0)
    p.add_argument("--layers", type=int, default=20)
    p.add_argument("--width", type=int, default=512)
    p.add_argument("--latency-log", default=None)
    args = p.parse_args()

    model = build(args.layers, args.width)
    x = torch.randn(1, args.width, device="cuda", dtype=torch.half)
    log = []
    with torch.inference_mode():
        for _ in range(100):  # warm-up
            model(x).cpu()
        print(f"serving start_ns={time.time_ns()}", flush=True)
        end = time.monotonic() + args.seconds
        while time.monotonic() < end:
            t0 = time.perf_counter_ns()
            with torch.cuda.nvtx.range("request"):
                y = model(x).cpu()
            log.append((time.time_ns(), (time.perf_counter_ns() - t0) / 1e6))
            time.sleep(args.gap_ms / 1e3)
    del y
    print(f"stopped end_ns={time.time_ns()}", flush=True)
    report(log, args.latency_log)


if __name__ == "__main__":
    main()
