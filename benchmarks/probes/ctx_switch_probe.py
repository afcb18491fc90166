"""Does CUPTI give context-switch records here (CUPTI_ACTIVITY_KIND_COMPUTE_ENGINE_CTX_SWITCH),
and do they mark another process's time slices? A host-bound MLP (the issue-27 service: 30 x 256
fp16 Linear+ReLU at batch 1, each request synchronised, 1 ms pauses) runs alone for --seconds,
then beside a light co-tenant service (benchmarks/causes.py light) for as long; CUPTI records
kernels and context switches throughout. Prints what arrived, per phase, and one raw record.

    python3 benchmarks/probes/ctx_switch_probe.py --seconds 4 > ctx_switch_probe.txt
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from typing import Any

ap = argparse.ArgumentParser()
ap.add_argument("--seconds", type=float, default=4.0)
args = ap.parse_args()

from cupti import cupti  # noqa: E402

print("cupti-python", getattr(sys.modules.get("cupti"), "__version__", "?"))
kind_names = [k.name for k in cupti.ActivityKind]
print("has COMPUTE_ENGINE_CTX_SWITCH:", "COMPUTE_ENGINE_CTX_SWITCH" in kind_names)
records: list[tuple[str, dict[str, Any]]] = []
sample: dict[str, str] = {}


def requested() -> tuple[int, int]:
    return 8 << 20, 0


def completed(activities: list[Any]) -> None:
    for a in activities:
        k = cupti.ActivityKind(a.kind).name
        if k not in sample:
            sample[k] = repr({f: getattr(a, f) for f in dir(a) if not f.startswith("_")
                              and not callable(getattr(a, f))})
        if k == "COMPUTE_ENGINE_CTX_SWITCH":
            records.append((k, {"t": a.timestamp, "op": int(a.operation_type),
                                "ctx": a.context_id}))
        elif k == "CONCURRENT_KERNEL":
            records.append((k, {"t": a.start, "end": a.end}))


cupti.activity_register_callbacks(requested, completed)
cupti.activity_enable(cupti.ActivityKind.CONCURRENT_KERNEL)
status = "enabled"
try:
    cupti.activity_enable(cupti.ActivityKind.COMPUTE_ENGINE_CTX_SWITCH)
except Exception as e:  # (older CUPTI, an unsupported GPU, or no permission)
    status = f"{type(e).__name__}: {e}"
print("enable COMPUTE_ENGINE_CTX_SWITCH:", status)

import torch  # noqa: E402

layers = []
for _ in range(30):
    layers += [torch.nn.Linear(256, 256), torch.nn.ReLU()]
model = torch.nn.Sequential(*layers).cuda().half().eval()
x = torch.randn(1, 256, device="cuda", dtype=torch.half)


def serve(seconds: float) -> tuple[int, int, list[float]]:
    lat = []
    t0 = time.time_ns()
    with torch.inference_mode():
        while time.time_ns() - t0 < seconds * 1e9:
            a = time.perf_counter_ns()
            model(x)
            torch.cuda.synchronize()
            lat.append((time.perf_counter_ns() - a) / 1e6)
            time.sleep(0.001)
    return t0, time.time_ns(), lat


serve(1.0)  # warm-up
phases = {}
phases["alone"] = serve(args.seconds)
here = os.path.dirname(os.path.abspath(__file__))
co = subprocess.Popen([sys.executable, os.path.join(here, "..", "causes.py"), "light", "--seconds",
                       str(args.seconds + 10), "--sleep-ms", "1"], stdout=subprocess.PIPE,
                      text=True)
ready = co.stdout.readline() if co.stdout else ""  # (the light load prints when it started)
print("co-tenant:", ready.strip()[:200])
time.sleep(1.0)
phases["cotenant"] = serve(args.seconds)
co.terminate()
co.wait()
cupti.activity_flush_all(1)
off = time.time_ns() - cupti.get_timestamp()  # (CUPTI's clock is the Unix epoch on Linux)
out: dict[str, Any] = {"status": status, "samples": sample}
for name, (t0, t1, lat) in phases.items():
    inside = [(k, r) for k, r in records if t0 <= r["t"] + off < t1]
    sw = [r for k, r in inside if k == "COMPUTE_ENGINE_CTX_SWITCH"]
    ctxs = sorted({r["ctx"] for r in sw})
    lat.sort()
    out[name] = {"requests": len(lat), "p50_ms": lat[len(lat) // 2],
                 "p90_ms": lat[int(len(lat) * 0.9)],
                 "kernels": sum(k == "CONCURRENT_KERNEL" for k, _ in inside),
                 "ctx_switch_records": len(sw),
                 "by_op": {op: sum(r["op"] == op for r in sw) for op in sorted({r["op"] for r in sw})},
                 "contexts": ctxs, "first": sw[:6]}
print(json.dumps(out, indent=1, default=str))
