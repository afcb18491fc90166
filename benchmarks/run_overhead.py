"""What `gpuwatch run` costs a program whose inferences it finds from torch module calls: the
same loop timed bare (torch events, hooks switched off) and by gpuwatch, interleaved in one
process under `gpuwatch run` (the sampler running for both), gaps 0 and 20 ms.

Step 1, the program (under gpuwatch run): blocks of BLOCK inferences, the arms alternating,
    python -m gpuwatch run -q -o DIR/run.parquet benchmarks/run_overhead.py DIR [PAIRS]
writes DIR/blocks.json (per block: arm, gap, wall ms per inference; bare gpu ms).
Step 2, the summary (the gpuwatch arm's gpu_ms from the trace, in region order):
    python benchmarks/run_overhead.py --summarise DIR
Reported: per gap, the median and IQR over block pairs of gpuwatch / bare for gpu_ms and wall.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np

BLOCK = 10


def program(out: Path, pairs: int) -> None:
    import torch

    from gpuwatch.autoregions import active
    from gpuwatch.bindings.torch import convnet

    regions = active()
    assert regions is not None, "run this under python -m gpuwatch run"
    net, x = convnet()
    stream = torch.cuda.current_stream()
    e0, e1 = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    blocks = []
    with torch.inference_mode():
        regions.enabled = False
        for _ in range(30):
            net(x)
        torch.cuda.synchronize()
        for gap_ms in (0.0, 20.0):
            for p in range(pairs if gap_ms == 0 else pairs // 2):
                for arm in (("bare", "gpuwatch") if p % 2 == 0 else ("gpuwatch", "bare")):
                    regions.enabled = arm == "gpuwatch"
                    wall, gpu = [], []
                    for _ in range(BLOCK):
                        t0 = time.perf_counter()
                        if arm == "bare":
                            e0.record(stream)
                            net(x)
                            e1.record(stream)
                            stream.synchronize()
                            gpu.append(e0.elapsed_time(e1))
                        else:
                            net(x)
                            stream.synchronize()
                        wall.append((time.perf_counter() - t0) * 1e3)
                        if gap_ms:
                            time.sleep(gap_ms / 1e3)
                    blocks.append({"gap_ms": gap_ms, "pair": p, "arm": arm, "wall": wall,
                                   "gpu": gpu})
    regions.enabled = True
    (out / "blocks.json").write_text(json.dumps(blocks))


def summarise(out: Path) -> dict:
    import gpuwatch

    blocks = json.loads((out / "blocks.json").read_text())
    inf = gpuwatch.load(out / "run.parquet").inferences.sort_values("region_id")
    gpu_ms = inf[inf["name"] == "call:Sequential"]["gpu_ms"].to_numpy(float)
    # (the first region is warm-up: it is the first of the first gpuwatch block)
    at, res = 0, {}
    for b in blocks:
        if b["arm"] == "gpuwatch":
            b["gpu"] = gpu_ms[at:at + BLOCK].tolist()
            at += BLOCK
    assert at == len(gpu_ms), (at, len(gpu_ms))
    for gap in sorted({b["gap_ms"] for b in blocks}):
        rows: dict[int, dict[str, dict]] = {}
        for b in blocks:
            if b["gap_ms"] == gap:
                rows.setdefault(b["pair"], {})[b["arm"]] = b
        for key in ("gpu", "wall"):
            r = np.array([np.median(v["gpuwatch"][key]) / np.median(v["bare"][key])
                          for v in rows.values()])
            q1, q2, q3 = np.percentile(r, [25, 50, 75])
            res[f"gap {gap:g} ms, {key}_ms ratio"] = {"p50": round(float(q2), 4),
                                                    "iqr": [round(float(q1), 4),
                                                            round(float(q3), 4)],
                                                    "pairs": len(r)}
        res[f"gap {gap:g} ms, bare gpu_ms p50"] = round(float(np.median(
            [np.median(v["bare"]["gpu"]) for v in rows.values()])), 4)
    (out / "run_overhead.json").write_text(json.dumps(res, indent=1))
    return res


if __name__ == "__main__":
    if sys.argv[1:2] == ["--summarise"]:
        print(json.dumps(summarise(Path(sys.argv[2])), indent=1))
    else:
        program(Path(sys.argv[1]), int(sys.argv[2]) if len(sys.argv) > 2 else 100)
