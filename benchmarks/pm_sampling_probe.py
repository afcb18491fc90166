"""Can CUPTI's PM sampling give the real SM clock (cycles elapsed over time) at sub-ms
resolution? Tries each candidate metric alone while the built-in engine runs with idle gaps,
and prints what came back or why it failed.

    python benchmarks/pm_sampling_probe.py [--interval-ns 100000]
"""

from __future__ import annotations

import argparse
import time
import traceback

import numpy as np

CANDIDATES = ["smsp__cycles_elapsed.avg.per_second", "sm__cycles_elapsed.avg.per_second",
              "gpc__cycles_elapsed.avg.per_second", "sys__cycles_elapsed.avg.per_second",
              "gpc__cycles_elapsed.max", "sm__cycles_elapsed.max"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--interval-ns", type=int, default=100_000)
    a = ap.parse_args()
    from cupti import pm_sampling

    from gpuwatch.bindings.builtin import PRESETS, BuiltinEngine
    from gpuwatch.bindings.cuda import CudaRuntime

    rt = CudaRuntime(0)
    stream = rt.stream()
    eng = BuiltinEngine(rt, stream, PRESETS["small"])
    for metric in CANDIDATES:
        print(f"== {metric}", flush=True)
        col = None
        try:
            col = pm_sampling.Collector(device_index=0)
            col.enable()
            col.configure(metrics=[metric], hardware_buffer_size=256 << 20,
                          sampling_interval=a.interval_ns,
                          trigger_mode=pm_sampling.TriggerMode.GPU_TIME_INTERVAL)
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
            print(f"   samples {n}; first timestamp - host start: {(ts[0] - t0) / 1e6:.1f} ms"
                  if n else "   no samples")
            if n:
                iv = np.diff(ts) / 1e3
                print(f"   interval us p50 {np.median(iv):.1f}; value p5/p50/p95 "
                      f"{np.percentile(vals, 5):.4g} / {np.median(vals):.4g} / "
                      f"{np.percentile(vals, 95):.4g}; distinct {len(np.unique(vals))}")
                print(f"   first values: {np.round(vals[:8], 1).tolist()}")
        except Exception as e:
            print(f"   FAILED: {type(e).__name__}: {e}")
            traceback.print_exc(limit=2)
        finally:
            if col is not None:
                try:
                    col.disable()
                except Exception:
                    pass
    rt.close()


if __name__ == "__main__":
    main()
