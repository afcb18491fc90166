# A small model service, as its user wrote it: a 30-layer MLP at batch 1 (host-bound: launching
# its 60 kernels takes longer than the GPU needs to run them), one request at a time with a short
# pause after each. The user times each request from call to result; gpuwatch times the same
# call (s.infer around a function that ends with torch.cuda.synchronize()).
#
#   python mlp_service.py --out mlp.parquet --seconds 25 --gap-ms 1 [--layers 30 --width 256]
#
# No `if __name__ == "__main__":`: a plain script. It prints "serving" when its measured loop
# starts, and writes the user's own per-request latency (--latency-log, CSV: epoch ns, ms).
import argparse
import time

import torch

from userclock import report  # (the benchmark's own clock, beside this file)

import gpuwatch

p = argparse.ArgumentParser()
p.add_argument("--out", required=True)
p.add_argument("--seconds", type=float, default=25.0)
p.add_argument("--gap-ms", type=float, default=1.0)
p.add_argument("--layers", type=int, default=30)
p.add_argument("--width", type=int, default=256)
p.add_argument("--sample-hz", type=float, default=200.0)
p.add_argument("--latency-log", default=None)
args = p.parse_args()

torch.manual_seed(0)
layers = []
for _ in range(args.layers):
    layers += [torch.nn.Linear(args.width, args.width), torch.nn.ReLU()]
model = torch.nn.Sequential(*layers).cuda().half().eval()
x = torch.randn(1, args.width, device="cuda", dtype=torch.half)


def predict(x):
    y = model(x)
    torch.cuda.synchronize()  # the request is answered when the host has the result
    return y


log = []
with torch.inference_mode(), gpuwatch.session(out=args.out, sample_hz=args.sample_hz) as s:
    s.set_condition(f"gap={args.gap_ms:g}ms", gap_ms=args.gap_ms)
    s.warmup = True
    for _ in range(200):
        s.infer(predict, x)
    s.warmup = False
    start = time.time_ns()
    print(f"serving start_ns={start}", flush=True)
    end = time.monotonic() + args.seconds
    while time.monotonic() < end:
        t0 = time.perf_counter_ns()
        s.infer(predict, x)
        log.append((time.time_ns(), (time.perf_counter_ns() - t0) / 1e6))
        if args.gap_ms > 0:
            time.sleep(args.gap_ms / 1e3)
    print(f"stopped end_ns={time.time_ns()}", flush=True)

report(log, args.latency_log)
