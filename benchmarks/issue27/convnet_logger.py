"""A video model service with a logging thread, as its user wrote it: each request copies a frame
to the GPU, runs a small fp16 conv net, waits for it (torch.cuda.synchronize()) and reads the
top class; the whole request is one gpuwatch span ("request"), so it ends when the host has the
result (--timing infer: `s.infer(answer)` around the same work). A second Python thread of the
same process, named "logger", serialises a big status dict with json.dumps in a loop from
--logger-at seconds into the measured loop, for --logger-seconds: pure-Python work that
competes for the interpreter lock.

    python convnet_logger.py --out thread.parquet --seconds 16 --logger-at 5 --logger-seconds 6
    ... --logger-keys 500 --logger-sleep-ms 5     # a lighter logger: small dumps, then a pause

Prints "serving" when the measured loop starts, and the logger's true window as
`cause python_thread start_ns=... / end_ns=...` (epoch ns). --latency-log writes the user's own
per-request latency (CSV: epoch ns at the result, ms).
"""
import argparse
import json
import threading
import time

import torch

from userclock import report  # (the benchmark's own clock, beside this file)

import gpuwatch


def build():
    layers, c = [], 3
    for out in (16, 32, 32, 64, 64, 64, 64, 64):
        layers += [torch.nn.Conv2d(c, out, 3, padding=1), torch.nn.ReLU()]
        c = out
    layers += [torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(c, 10)]
    return torch.nn.Sequential(*layers).cuda().half().eval()


def logger(start_at: float, seconds: float, keys: int, sleep_s: float, out: list) -> None:
    status = {f"stream{i}": {"id": i, "fps": 29.97, "dropped": i % 7, "tags": ["cam", "hd", "x"],
                             "model": "convnet-small", "last_error": None} for i in range(keys)}
    time.sleep(max(0.0, start_at - time.monotonic()))
    start = time.time_ns()
    print(f"cause python_thread start_ns={start} thread=logger keys={keys} "
          f"sleep_ms={sleep_s * 1e3:g}", flush=True)
    until, n, size = time.monotonic() + seconds, 0, 0
    while time.monotonic() < until:
        size += len(json.dumps(status))
        n += 1
        if sleep_s:
            time.sleep(sleep_s)
    print(f"cause python_thread end_ns={time.time_ns()} dumps={n} bytes={size}", flush=True)
    out.append(n)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--out", required=True)
    p.add_argument("--seconds", type=float, default=16.0)
    p.add_argument("--logger-at", type=float, default=5.0)
    p.add_argument("--logger-seconds", type=float, default=6.0)
    p.add_argument("--logger-keys", type=int, default=5000)
    p.add_argument("--logger-sleep-ms", type=float, default=0.0)
    p.add_argument("--timing", choices=("span", "infer"), default="span",
                   help="time each request as a span (default) or as s.infer(answer)")
    p.add_argument("--sample-hz", type=float, default=200.0)
    p.add_argument("--latency-log", default=None)
    args = p.parse_args()

    model = build()
    frame = torch.zeros(1, 3, 448, 768, dtype=torch.uint8)  # a decoded frame, on the host
    log, done = [], []
    with torch.inference_mode(), gpuwatch.session(out=args.out, sample_hz=args.sample_hz) as s:
        def answer():
            x = frame.to("cuda", non_blocking=True).half() * (1 / 255)
            logits = model(x)
            torch.cuda.synchronize()
            return int(logits.argmax().item())

        def request():
            if args.timing == "infer":  # the whole request as one timed inference
                return s.infer(answer)
            with s.span("request"):
                top = answer()
            return top

        s.warmup = True
        for _ in range(50):
            request()
        s.warmup = False
        t_start = time.monotonic()
        print(f"serving start_ns={time.time_ns()}", flush=True)
        th = threading.Thread(target=logger, name="logger", daemon=True,
                              args=(t_start + args.logger_at, args.logger_seconds,
                                    args.logger_keys, args.logger_sleep_ms / 1e3, done))
        th.start()
        end = t_start + args.seconds
        while time.monotonic() < end:
            t0 = time.perf_counter_ns()
            request()
            log.append((time.time_ns(), (time.perf_counter_ns() - t0) / 1e6))
        th.join()
        print(f"stopped end_ns={time.time_ns()}", flush=True)

    report(log, args.latency_log)


if __name__ == "__main__":
    main()
