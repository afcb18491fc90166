"""What gpuwatch costs a user's own PyTorch program: a bare torch-event loop vs the same model
under `with gpuwatch.session()`, interleaved in one process.

Inside one session, per case, PAIRS groups of short blocks of BLOCK inferences, one block per
arm, in an order that rotates and reverses from group to group, so that every arm sees the same
GPU clocks and the same host (a VM's CPU speed was seen to drift by 2x between blocks seconds
apart):
- bare: the telemetry sampler paused, the model called directly between two torch events on
  the current stream (one pair, reused; the stream looked up once), then the program's own
  synchronise (the stream, as in the gpuwatch arm) and the events' elapsed time (the simplest
  correct measurement, written carefully; until 2026-11-25 it synchronised on its end event:
  overhead_anatomy.py measured no difference, 1.0007 / 1.0004);
- gpuwatch: the sampler running (1 kHz, its own process: the default), the model called as
  `s.infer(model, x)` (events on torch's current stream, resolved lazily), then the program's
  own synchronise;
- bare, sampler on: the bare loop with the sampler running (what the sampler process alone
  does to the program).
Per iteration: gpu_ms (bare: its events; gpuwatch: the trace) and wall time (perf_counter
around the call and the synchronise). Per group: ratios of the block medians. Reported: the
median ratio and its IQR over groups, for gpuwatch / bare (the target) and its two parts,
sampler (bare with / without the sampler) and region (gpuwatch / bare with the sampler). Also:
what starting and closing a session costs.

With --probe, the gpuwatch arm also stamps the in-band SM clock around every region (issue 14).
With --probe-arms (issue 28), the session runs with the probe at its default (sampled: a region
once 5 ms have passed since the last stamped one and ~10 ms of regions' GPU time) and three
gpuwatch arms share it: "gpuwatch"
(the default), "gpuwatch, probe off" (no region stamped) and "gpuwatch, every region" (every
region stamped, issue 14's cost), toggled between blocks in the same session.
With --getter-arm, a fourth arm, "gpuwatch, torch getter": the gpuwatch arm with the C timed
path reading torch's current stream through torch's own getter (a pybind11 call) instead of
c10 directly (bindings/torch.py), toggled in the same session.

    python benchmarks/user_overhead.py --out DIR [--pairs 60] [--block 10] [--probe] [--getter-arm]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

import gpuwatch


# The arms of one pair, in an order that rotates and reverses (every arm in every position).
ARMS = ("bare", "gpuwatch", "bare, sampler on")
GETTER = "gpuwatch, torch getter"
PROBE_OFF, PROBE_ALL = "gpuwatch, probe off", "gpuwatch, every region"


def probe_mode(s: Any, arm: str, every_ns: tuple[int, int]) -> None:
    """Stamp as the arm says: the session's default period, never, or every region (the
    region timer's own knobs, set between blocks)."""
    t = s._timer
    t._probe_every_ns = 0 if arm == PROBE_ALL else every_ns[0]
    t._probe_region_ns = 0 if arm == PROBE_ALL else every_ns[1]
    t._stamp_due_ns = 1 << 62 if arm == PROBE_OFF else 0
    t._stamp_due_rid = 0
    t._set_due()


def orders(arms: tuple[str, ...]) -> list[tuple[str, ...]]:
    n = len(arms)
    return [arms[i:] + arms[:i] for i in range(n)] + [(arms[i:] + arms[:i])[::-1] for i in range(n)]


def torch_read(s: Any, getter: bool) -> None:
    """Point session `s`'s C timed path at torch's getter (True) or back at c10 (False)."""
    import torch

    from gpuwatch.bindings.torch import c10_stream_addresses

    fs = s._timer._fs
    if getter:
        fs.use_c10(0, 0, 0)
        fs.getter, fs.device = torch._C._cuda_getCurrentRawStream, 0
    else:
        addrs = c10_stream_addresses()
        assert addrs is not None
        fs.use_c10(addrs[0], addrs[1], 0)
        fs.getter = None


def make_cases() -> dict[str, tuple[Any, Any, float, bool, bool]]:
    """name -> (fn, input, gap_ms, on its own torch stream, the stream given to the session)."""
    import torch

    from gpuwatch.bindings.torch import convnet

    net, x = convnet()
    a = torch.randn(8192, 8192, device="cuda", dtype=torch.half)

    def gemm(m: Any) -> Any:
        return m @ m

    return {
        "convnet fp16 eager, gap 0": (net, x, 0.0, False, False),
        "convnet fp16 eager, gap 20 ms": (net, x, 20.0, False, False),
        # session(stream=...): no per-region question to torch about its current stream
        "convnet fp16 eager, gap 20 ms, session(stream=)": (net, x, 20.0, False, True),
        "convnet fp16 eager, own stream, gap 0": (net, x, 0.0, True, False),
        "gemm 8192 fp16, gap 0": (gemm, a, 0.0, False, False),
        "gemm 8192 fp16, gap 20 ms": (gemm, a, 20.0, False, False),
    }


def bare_block(fn: Any, x: Any, n: int, gap_s: float) -> tuple[list[float], list[float]]:
    """A careful engineer's loop: one pair of events reused, the stream looked up once; the
    program's own synchronise is the gpuwatch arm's (the stream), so that only the timing
    differs between the arms."""
    import torch

    gpu, wall = [], []
    stream = torch.cuda.current_stream()
    sync = stream.synchronize
    e0, e1 = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    for _ in range(n):
        h0 = time.perf_counter()
        e0.record(stream)
        fn(x)
        e1.record(stream)
        sync()
        gpu.append(e0.elapsed_time(e1))
        wall.append((time.perf_counter() - h0) * 1e3)
        if gap_s:
            time.sleep(gap_s)
    return gpu, wall


def gpuwatch_block(s: Any, fn: Any, x: Any, n: int, gap_s: float) -> list[float]:
    import torch

    wall = []
    sync = torch.cuda.current_stream().synchronize
    for _ in range(n):
        h0 = time.perf_counter()
        s.infer(fn, x)
        sync()
        wall.append((time.perf_counter() - h0) * 1e3)
        if gap_s:
            time.sleep(gap_s)
    return wall


def run_case(name: str, fn: Any, x: Any, gap_ms: float, own_stream: bool, given: bool,
             pairs: int, block: int, trace: Path, probe: bool = False,
             getter_arm: bool = False, probe_arms: bool = False
             ) -> tuple[pd.DataFrame, dict[str, Any]]:
    import torch

    stream = torch.cuda.Stream() if own_stream else torch.cuda.current_stream()
    walls: dict[tuple[str, int], list[float]] = {}
    rows = []
    with torch.inference_mode(), torch.cuda.stream(stream), \
            gpuwatch.session(out=trace, sample_hz=1000, probe=probe or probe_arms or None,
                             overwrite=True, stream=stream if given else None) as s:
        s.pause_sampling()
        bare_block(fn, x, 20, 0)  # warm-up
        gpuwatch_block(s, fn, x, 20, 0)  # (the C path learns how to read torch's stream)
        path = s._timer._torch_path
        getter_arm = getter_arm and path == "c10"
        arms = ARMS + (GETTER,) if getter_arm else ARMS
        every_ns = (s._timer._probe_every_ns, s._timer._probe_region_ns)
        if probe_arms:
            arms = arms + (PROBE_OFF, PROBE_ALL)
        for p in range(pairs):
            for arm in orders(arms)[p % (2 * len(arms))]:
                if arm.startswith("gpuwatch"):
                    if getter_arm:
                        torch_read(s, arm == GETTER)
                    if probe_arms:
                        probe_mode(s, arm, every_ns)
                    s.set_condition(f"{arm}|{p}")
                    s.resume_sampling()
                    walls[(arm, p)] = gpuwatch_block(s, fn, x, block, gap_ms / 1e3)
                    s.pause_sampling()
                else:
                    if arm == "bare, sampler on":
                        s.resume_sampling()
                    gpu, wall = bare_block(fn, x, block, gap_ms / 1e3)
                    if arm == "bare, sampler on":
                        s.pause_sampling()
                    rows.append({"case": name, "pair": p, "arm": arm,
                                 "gpu_ms_p50": float(np.median(gpu)),
                                 "wall_ms_p50": float(np.median(wall))})
        if getter_arm:
            torch_read(s, False)
    tr = gpuwatch.load(trace)
    inf = tr.measured()
    for cond, g in inf.groupby("condition", sort=False):
        if "|" not in str(cond):
            continue  # the warm-up
        arm, p = str(cond).split("|")
        rows.append({"case": name, "pair": int(p), "arm": arm,
                     "gpu_ms_p50": float(g["gpu_ms"].median()),
                     "wall_ms_p50": float(np.median(walls[(arm, int(p))]))})
    info = {"case": name, "regions": len(inf), "checked": int(inf["outside_ms"].notna().sum()),
            "stream_sources": sorted(set(inf["stream_source"])),
            "sampler_mode": tr.meta["sampler"]["mode"],
            "sampler_achieved_hz": tr.meta["sampler"].get("achieved_hz"),
            "sampler_paused_polls": tr.meta["sampler"].get("paused_polls"),
            "sampler_polls": tr.meta["sampler"].get("polls"),
            "regions_meta": tr.meta.get("regions"), "probe": tr.meta["options"]["probe"],
            "probe_every_ms": tr.meta["options"].get("probe_every_ms"),
            "stamped_share_by_arm": {
                str(arm): float(g["sm_clock_inband_mhz"].notna().mean())
                for arm, g in inf.groupby(inf["condition"].astype(str).str.split("|").str[0])},
            "torch_stream_read": path,
            "inband_mhz_p50": (float(inf["sm_clock_inband_mhz"].median())
                               if inf["sm_clock_inband_mhz"].notna().any() else None)}
    return pd.DataFrame(rows), info


def session_cost(trace: Path, n: int = 5) -> dict[str, float]:
    """Seconds to enter and to leave `with gpuwatch.session()` (sampler process start, NVML,
    anchors; writing the trace), with no regions."""
    enter, leave = [], []
    for _ in range(n):
        t0 = time.perf_counter()
        s = gpuwatch.session(out=trace, overwrite=True)
        s.start()
        t1 = time.perf_counter()
        s.close()
        enter.append(t1 - t0)
        leave.append(time.perf_counter() - t1)
    return {"enter_s_p50": float(np.median(enter)), "close_s_p50": float(np.median(leave))}


def median_ci(x: np.ndarray, n: int = 4000, seed: int = 0) -> tuple[float, float]:
    """A percentile-bootstrap 95% interval of the median of `x` (resampled all at once)."""
    x = np.asarray(x, dtype=float)
    x = x[np.isfinite(x)]
    if len(x) < 2:
        return float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    meds = np.median(x[rng.integers(0, len(x), size=(n, len(x)))], axis=1)
    lo, hi = np.percentile(meds, [2.5, 97.5])
    return float(lo), float(hi)


def summarise(blocks: pd.DataFrame) -> pd.DataFrame:
    out = []
    for case, g in blocks.groupby("case", sort=False):
        piv = g.pivot(index="pair", columns="arm", values=["gpu_ms_p50", "wall_ms_p50"])
        row: dict[str, Any] = {"case": case, "pairs": len(piv)}
        for col, label in (("gpu_ms_p50", "gpu_ms"), ("wall_ms_p50", "wall")):
            row[f"{label}_bare_ms"] = round(float(piv[(col, "bare")].median()), 4)
            row[f"{label}_gpuwatch_ms"] = round(float(piv[(col, "gpuwatch")].median()), 4)
            # the target (gpuwatch / bare), and its two parts: the sampler process's effect on
            # an untimed loop, and the timed region's cost with the sampler on in both
            for key, num, den in (("ratio", "gpuwatch", "bare"),
                                  ("sampler_ratio", "bare, sampler on", "bare"),
                                  ("region_ratio", "gpuwatch", "bare, sampler on"),
                                  ("getter_ratio", GETTER, "bare"),
                                  ("probe_off_ratio", PROBE_OFF, "bare"),
                                  ("every_region_ratio", PROBE_ALL, "bare"),
                                  ("default_vs_off", "gpuwatch", PROBE_OFF)):
                if (col, num) not in piv or (col, den) not in piv:
                    continue
                ratio = (piv[(col, num)] / piv[(col, den)]).to_numpy()
                q1, q2, q3 = np.percentile(ratio, [25, 50, 75])
                row[f"{label}_{key}_p50"] = round(float(q2), 4)
                row[f"{label}_{key}_iqr"] = f"{q1:.4f}..{q3:.4f}"
                if key in ("ratio", "getter_ratio", "probe_off_ratio", "every_region_ratio"):  # how well the median is known: a bootstrap 95% interval
                    lo, hi = median_ci(ratio)
                    row[f"{label}_{key}_p50_ci95"] = f"{lo:.4f}..{hi:.4f}"
        out.append(row)
    return pd.DataFrame(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--pairs", type=int, default=60)
    ap.add_argument("--gap-pairs", type=int, default=0,
                    help="pairs for the cases with gaps (default: half of --pairs)")
    ap.add_argument("--block", type=int, default=10)
    ap.add_argument("--cases", default="", help="case-name substrings separated by |")
    ap.add_argument("--probe", action="store_true", help="the in-band clock probe on")
    ap.add_argument("--probe-arms", action="store_true",
                    help="the probe at its default, off and on every region: three arms")
    ap.add_argument("--getter-arm", action="store_true",
                    help="a fourth arm: torch's current stream read through torch's getter")
    a = ap.parse_args()
    import torch

    a.out.mkdir(parents=True, exist_ok=True)
    cases = make_cases()
    # (a pattern that names a case exactly picks that case alone)
    pats = a.cases.split("|") if a.cases else []
    wanted = [c for c in cases if not pats or any(c == w or (w not in cases and w in c)
                                                  for w in pats)]
    blocks, infos = [], []
    for name in wanted:
        fn, x, gap, own, given = cases[name]
        t0 = time.time()
        pairs = a.pairs if not gap else (a.gap_pairs or max(10, a.pairs // 2))
        df, info = run_case(name, fn, x, gap, own, given, pairs, a.block, a.out / "case.parquet",
                            probe=a.probe, getter_arm=a.getter_arm, probe_arms=a.probe_arms)
        blocks.append(df)
        infos.append(info)
        print(f"done: {name} ({time.time() - t0:.0f} s)", flush=True)
    cost = session_cost(a.out / "empty.parquet")
    df = pd.concat(blocks)
    df.to_csv(a.out / "user_overhead_blocks.csv", index=False)
    summary = summarise(df)
    summary.to_csv(a.out / "user_overhead_summary.csv", index=False)
    with pd.option_context("display.width", 250, "display.max_columns", 30):
        print(summary.to_string(index=False))
    print(f"session enter/close: {cost}")
    (a.out / "user_overhead_info.json").write_text(json.dumps(
        {"args": vars(a), "gpu": torch.cuda.get_device_name(), "torch": torch.__version__,
         "session_cost": cost, "cases": infos}, default=str, indent=1))


if __name__ == "__main__":
    main()
