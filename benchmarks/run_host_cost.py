"""Host time `gpuwatch run`'s hooks add to a program's inference, on the stand-in device (no GPU:
its event record is a C function stamping the host clock), interleaved in one process:

- nvtx:  torch.cuda.nvtx's shape (range_push/range_pop: Python functions over a C call),
         push then pop with nothing between; bare: the hook off (the library's own functions).
- calls: a torch-like module (Module.__call__ -> forward, two submodules); bare: the hook off.

Each arm is one push/pop pair (one model call), timed with perf_counter_ns, alternating, after a
sleep of GAP ms (0: back to back). After an idle gap the host is cold, and every line gpuwatch
runs costs several times more than back to back: the cost that matters for the seed's
question. Reported per source and gap: median and IQR of host us per region, both arms, and
the difference of medians; `--python` uses the hooks' Python implementation (as where the C
module was not built) instead of gpuwatch/regions/_autoregions.c.

    python benchmarks/run_host_cost.py [--gaps 0 20] [--n 300] [--python] [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
import types
from pathlib import Path

import numpy as np

import gpuwatch
from gpuwatch import autoregions
from gpuwatch.autoregions import AutoRegions


def _nvtx() -> types.ModuleType:
    mod = types.ModuleType("nvtx")
    stack: list[str] = []

    def range_push(msg: str) -> int:  # torch.cuda.nvtx's shape: Python over a C call
        stack.append(msg)
        return len(stack) - 1

    def range_pop() -> int:
        stack.pop()
        return len(stack)

    mod.range_push, mod.range_pop = range_push, range_pop  # type: ignore[attr-defined]
    return mod


class Module:
    def _wrapped_call_impl(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        return self.forward(*args, **kwargs)  # type: ignore[attr-defined]

    __call__ = _wrapped_call_impl


class Layer(Module):
    def forward(self, x: int) -> int:
        return x + 1


class Net(Module):
    def __init__(self) -> None:
        self.a, self.b = Layer(), Layer()

    def forward(self, x: int) -> int:
        return self.b(self.a(x))


def measure(source: str, gap_ms: float, n: int, out: Path) -> dict[str, list[int]]:
    nvtx = _nvtx()
    torch = types.SimpleNamespace(nn=types.SimpleNamespace(Module=Module),
                                  cuda=types.SimpleNamespace(nvtx=nvtx))
    net = Net()
    res: dict[str, list[int]] = {"bare": [], "gpuwatch": []}
    with gpuwatch.session("standin", out, check_every=0, sampler="off", overwrite=True) as s:
        regions = AutoRegions(s, (source,))
        if source == "nvtx":
            regions._hook_torch_nvtx(torch)
        else:
            regions._hook_torch_modules(torch)
        for i in range(n):
            for arm in (("bare", "gpuwatch") if i % 2 else ("gpuwatch", "bare")):
                regions.enabled = arm == "gpuwatch"
                push, pop = nvtx.range_push, nvtx.range_pop
                if gap_ms:
                    time.sleep(gap_ms / 1e3)
                t0 = time.perf_counter_ns()
                if source == "nvtx":
                    push("infer")
                    pop()
                else:
                    net(1)
                res[arm].append(time.perf_counter_ns() - t0)
        regions.enabled = True
        regions.uninstall()
        summary = s._timer.summary()
    res["c_path_regions"] = [summary["c_path_regions"] or 0]
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--gaps", type=float, nargs="+", default=[0.0, 20.0])
    ap.add_argument("--n", type=int, default=300, help="pairs per source and gap")
    ap.add_argument("--python", action="store_true", help="the hooks' Python implementation")
    ap.add_argument("--json", type=Path, help="write the results here too")
    a = ap.parse_args()
    if a.python:
        autoregions._native = lambda: None  # type: ignore[assignment]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for source in ("nvtx", "call"):
            for gap in a.gaps:
                n = a.n * 10 if gap == 0 else a.n
                r = measure(source, gap, n, Path(tmp) / "t.parquet")
                row: dict = {"source": source, "gap_ms": gap, "pairs": n,
                             "impl": "python" if a.python else "c",
                             "c_path_regions": r["c_path_regions"][0]}
                for arm in ("bare", "gpuwatch"):
                    v = np.array(r[arm][n // 20:]) / 1e3  # (the first 5%: warm-up)
                    q1, q2, q3 = np.percentile(v, [25, 50, 75])
                    row[arm] = {"p50_us": round(q2, 2), "iqr_us": [round(q1, 2), round(q3, 2)]}
                row["added_p50_us"] = round(row["gpuwatch"]["p50_us"] - row["bare"]["p50_us"], 2)
                rows.append(row)
                print(f"{source:5s} gap {gap:4g} ms ({row['impl']}): bare {row['bare']['p50_us']:7.2f}"
                      f" us, gpuwatch {row['gpuwatch']['p50_us']:7.2f} us (IQR "
                      f"{row['gpuwatch']['iqr_us'][0]}-{row['gpuwatch']['iqr_us'][1]}), added "
                      f"{row['added_p50_us']:6.2f} us; {row['c_path_regions']} of {n} regions "
                      f"on the C path", flush=True)
    if a.json:
        a.json.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
