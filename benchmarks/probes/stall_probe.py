"""Where do the periodic host stalls come from? (Seen in experiment 2 on the H100: every ~1.5 s
one or two inferences take 10-18 ms, all of it host enqueue time.) Runs the same PyTorch eager
loop (768x448 conv net, 20 ms sleep, 800 iterations) four ways, each in a fresh process:
gpuwatch with its sampler process, gpuwatch with sampling off, and plain PyTorch timed with
torch.cuda.Event without gpuwatch, with and without Python's garbage collector.

    python benchmarks/probes/stall_probe.py
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile

PLAIN = r'''
import gc, json, sys, time, torch
from gpuwatch.bindings.torch import convnet
if sys.argv[1] == "nogc":
    gc.disable()
model, x = convnet()
s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
ms = []
with torch.inference_mode():
    for i in range(820):
        s.record(); model(x); e.record(); e.synchronize()
        if i >= 20:
            ms.append(s.elapsed_time(e))
        time.sleep(0.02)
print(json.dumps(ms))
'''


def stats(ms: list[float]) -> dict[str, float]:
    import numpy as np

    a = np.asarray(ms)
    med = float(np.median(a))
    return {"n": a.size, "p50_ms": round(med, 3), "p99_ms": round(float(np.percentile(a, 99)), 3),
            "max_ms": round(float(a.max()), 3), "stalls_over_3x": int((a > 3 * med).sum())}


def main() -> None:
    import gpuwatch

    out = {}
    with tempfile.TemporaryDirectory() as d:
        for name, sampler in (("gpuwatch, sampler process", "process"),
                              ("gpuwatch, sampler off", "off")):
            p = f"{d}/{sampler}.parquet"
            subprocess.run([sys.executable, "-m", "gpuwatch.record", "--torch",
                            "gpuwatch.bindings.torch:convnet", "--gap", "20", "--iters", "800",
                            "--sampler", sampler, "--quiet", "--out", p], check=True)
            out[name] = stats(gpuwatch.load(p).measured()["gpu_ms"].tolist())
    for name, arg in (("plain PyTorch", "gc"), ("plain PyTorch, gc disabled", "nogc")):
        r = subprocess.run([sys.executable, "-c", PLAIN, arg], capture_output=True, text=True,
                           check=True)
        out[name] = stats(json.loads(r.stdout.strip().splitlines()[-1]))
    for k, v in out.items():
        print(f"{k:32s} {v}")


if __name__ == "__main__":
    main()
