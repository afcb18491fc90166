"""What `gpuwatch run` costs a program, interleaved in one process under `gpuwatch run` (the
sampler running for both arms), gaps 0 and 20 ms, one small fp16 conv net (bindings/torch.py's
convnet, launch-bound):

- calls:   regions found from torch module calls. bare: the hook is off (torch's own
           Module.__call__, nothing in between) and the model is timed by two torch events on
           its stream; gpuwatch: the model called as the program calls it, timed by `run`.
- nvtx:    the program marks each inference with torch.cuda.nvtx.range_push/range_pop, in both
           arms; bare: torch's own NVTX functions and two torch events; gpuwatch: the ranges
           are the regions (run with --regions nvtx).
- kernels: CUPTI kernel tracing (run with --regions kernels), on in one arm and paused in the
           other; both arms timed by torch events (what tracing costs the program's own work).
- aa:      the control: both arms bare (the hooks off, torch events), labelled as the others
           are: how far from 1 a run's ratio strays when nothing differs between the arms.

Step 1, the program (under gpuwatch run): blocks of BLOCK inferences, the arms alternating,
    python -m gpuwatch run -q [--regions nvtx|kernels] -o DIR/run.parquet \\
        benchmarks/run_overhead.py DIR [PAIRS [MODE [GAP_PAIRS]]]
writes DIR/blocks.json (per block: arm, gap, wall ms per inference; bare gpu ms; step 2 adds
    the gpuwatch arm's gpu ms from the trace).
Step 2, the summary (the gpuwatch arm's gpu_ms from the trace, in region order):
    python benchmarks/run_overhead.py --summarise DIR
Reported: per gap, the median and IQR over block pairs of gpuwatch / bare for gpu_ms and wall,
and a bootstrap 95% interval of the wall ratio's median.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np

BLOCK = 10
MODES = ("calls", "nvtx", "kernels", "aa")
REGION_NAME = {"calls": "call:Sequential", "nvtx": "nvtx:infer"}


def program(out: Path, pairs: int, mode: str, gap_pairs: int) -> None:
    import torch

    from gpuwatch import recorder
    from gpuwatch.autoregions import active
    from gpuwatch.bindings.torch import convnet

    regions = active()
    assert regions is not None, "run this under python -m gpuwatch run"
    session = recorder.active()
    assert mode in MODES, mode
    net, x = convnet()
    stream = torch.cuda.current_stream()
    e0, e1 = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    nvtx = torch.cuda.nvtx
    blocks = []

    def switch(arm: str) -> None:
        if mode == "kernels":
            (session.resume_kernel_tracing if arm == "gpuwatch"
             else session.pause_kernel_tracing)()
        else:
            regions.enabled = arm == "gpuwatch" and mode != "aa"

    with torch.inference_mode():
        switch("bare")
        for _ in range(30):
            net(x)
        torch.cuda.synchronize()
        for gap_ms in (0.0, 20.0):
            for p in range(pairs if gap_ms == 0 else gap_pairs):
                for arm in (("bare", "gpuwatch") if p % 2 == 0 else ("gpuwatch", "bare")):
                    switch(arm)
                    events = arm == "bare" or mode in ("kernels", "aa")
                    wall, gpu = [], []
                    for _ in range(BLOCK):
                        t0 = time.perf_counter()
                        if mode == "nvtx":
                            nvtx.range_push("infer")
                        if events:
                            e0.record(stream)
                        net(x)
                        if events:
                            e1.record(stream)
                        if mode == "nvtx":
                            nvtx.range_pop()
                        stream.synchronize()
                        wall.append((time.perf_counter() - t0) * 1e3)
                        if events:
                            gpu.append(e0.elapsed_time(e1))
                        if gap_ms:
                            time.sleep(gap_ms / 1e3)
                    blocks.append({"gap_ms": gap_ms, "pair": p, "arm": arm, "wall": wall,
                                   "gpu": gpu})
    switch("gpuwatch")
    (out / "blocks.json").write_text(json.dumps({"mode": mode, "blocks": blocks}))


def median_ci(r: np.ndarray, n: int = 4000, seed: int = 0) -> list[float]:
    rng = np.random.default_rng(seed)
    meds = np.median(rng.choice(r, size=(n, r.size)), axis=1)
    return [round(float(v), 4) for v in np.percentile(meds, [2.5, 97.5])]


def summarise(out: Path) -> dict:
    import gpuwatch

    saved = json.loads((out / "blocks.json").read_text())
    mode, blocks = saved["mode"], saved["blocks"]
    if mode in REGION_NAME and (out / "run.parquet").exists():  # (else kept from before)
        inf = gpuwatch.load(out / "run.parquet").inferences.sort_values("region_id")
        gpu_ms = inf[inf["name"] == REGION_NAME[mode]]["gpu_ms"].to_numpy(float)
        at = 0
        for b in blocks:
            if b["arm"] == "gpuwatch":
                b["gpu"] = gpu_ms[at:at + BLOCK].tolist()
                at += BLOCK
        assert at == len(gpu_ms), (at, len(gpu_ms))
        # (kept with the blocks: the trace may go, and runs can be pooled later)
        (out / "blocks.json").write_text(json.dumps({"mode": mode, "blocks": blocks}))
    res: dict = {"mode": mode}
    for gap in sorted({b["gap_ms"] for b in blocks}):
        rows: dict[int, dict[str, dict]] = {}
        for b in blocks:
            if b["gap_ms"] == gap:
                rows.setdefault(b["pair"], {})[b["arm"]] = b
        for key in ("gpu", "wall"):
            r = np.array([np.median(v["gpuwatch"][key]) / np.median(v["bare"][key])
                          for v in rows.values()])
            q1, q2, q3 = np.percentile(r, [25, 50, 75])
            res[f"gap {gap:g} ms, {key}_ms ratio"] = {
                "p50": round(float(q2), 4), "iqr": [round(float(q1), 4), round(float(q3), 4)],
                "p50_ci95": median_ci(r), "pairs": len(r)}
        for arm in ("bare", "gpuwatch"):
            for key in ("gpu", "wall"):
                res[f"gap {gap:g} ms, {arm} {key}_ms p50"] = round(float(np.median(
                    [np.median(v[arm][key]) for v in rows.values()])), 4)
    (out / "run_overhead.json").write_text(json.dumps(res, indent=1))
    return res


if __name__ == "__main__":
    if sys.argv[1:2] == ["--summarise"]:
        print(json.dumps(summarise(Path(sys.argv[2])), indent=1))
    else:
        a = sys.argv[1:]
        pairs = int(a[1]) if len(a) > 1 else 100
        program(Path(a[0]), pairs, a[2] if len(a) > 2 else "calls",
                int(a[3]) if len(a) > 3 else pairs // 2)
