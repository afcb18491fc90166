"""Can CUPTI's PM sampling give the real SM clock (cycles elapsed over time) at sub-ms
resolution? Tries each candidate metric alone while the built-in engine runs with idle gaps,
and prints what came back or why it failed.

    python benchmarks/probes/pm_sampling_probe.py [--interval-ns 100000]
"""

from __future__ import annotations

import argparse
import time

import numpy as np

# First the metrics of cupti-python's own PM-sampling sample (cycles; divided by the window's
# duration they give a clock), then rate forms of them.
CANDIDATES = ["gr__cycles_elapsed.max", "sm__cycles_elapsed.sum", "sm__cycles_elapsed.max",
              "gr__cycles_elapsed.avg.per_second", "sm__cycles_elapsed.avg.per_second",
              "smsp__cycles_elapsed.avg.per_second", "sys__cycles_elapsed.avg.per_second"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--interval-ns", type=int, default=10_000)
    a = ap.parse_args()
    from cupti import pm_sampling

    from gpuwatch.bindings.builtin import PRESETS, BuiltinEngine
    from gpuwatch.bindings.cuda import CudaRuntime

    rt = CudaRuntime(0)
    stream = rt.stream()
    eng = BuiltinEngine(rt, stream, PRESETS["small"])
    col = pm_sampling.Collector(device_index=0)
    try:
        col.enable()  # initialises CUPTI's profiler, which the chip-name query needs
    except Exception as e:
        print(f"PM sampling could not be enabled: {type(e).__name__}: {e}")
        rt.close()
        return
    chip = getattr(col, "_chip_name", None)
    print(f"chip: {chip}")
    try:
        from cupti import profiler_host

        host = profiler_host.ProfilerHost(chip, profiler_host.ProfilerType.PM_SAMPLING)
        host.initialize()
        found = []
        for mt in profiler_host.MetricType:
            if mt.name.endswith("COUNT"):
                continue
            try:
                found += [m for m in host.get_base_metrics(mt) if "cycles_elapsed" in m]
            except ValueError:
                continue
        host.deinitialize()
        print(f"PM-sampling base metrics with cycles_elapsed: {found}")
    except Exception as e:
        print(f"could not list metrics: {type(e).__name__}: {e}")
    for metric in CANDIDATES:
        print(f"== {metric}", flush=True)
        try:
            col.configure(metrics=[metric], sampling_interval=a.interval_ns)
            col.start()
            t0 = time.time_ns()
            for i in range(60):
                eng.infer()
                rt.stream_synchronize(stream)
                if i % 10 == 9:
                    time.sleep(0.05)  # idle gaps: does the clock (or its reading) move?
            col.stop()
            data = col.decode()
            n = data.num_completed_samples
            vals = np.array([data[i].metric_values[0] for i in range(n)], dtype=float)
            ts = np.array([data[i].start_timestamp for i in range(n)], dtype=np.int64)
            te = np.array([data[i].end_timestamp for i in range(n)], dtype=np.int64)
            print(f"   samples {n}; first start - host start: {(ts[0] - t0) / 1e6:.1f} ms"
                  if n else "   no samples")
            if n:
                win = (te - ts).astype(float)
                print(f"   window us p50 {np.median(win) / 1e3:.2f}; value p5/p50/p95 "
                      f"{np.percentile(vals, 5):.5g} / {np.median(vals):.5g} / "
                      f"{np.percentile(vals, 95):.5g}; distinct {len(np.unique(vals))}")
                with np.errstate(divide="ignore", invalid="ignore"):
                    mhz = vals / win * 1e3  # cycles per ns -> MHz
                print(f"   as a clock (value / window): MHz p5/p50/p95 "
                      f"{np.nanpercentile(mhz, 5):.1f} / {np.nanmedian(mhz):.1f} / "
                      f"{np.nanpercentile(mhz, 95):.1f}")
                print(f"   first values: {np.round(vals[:6], 1).tolist()}")
        except Exception as e:
            print(f"   FAILED: {type(e).__name__}: {e}")
    try:
        col.disable()
    except Exception:
        pass
    rt.close()


if __name__ == "__main__":
    main()
