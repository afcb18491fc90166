"""Which CUPTI set-up delivers CUDA_EVENT records (device timestamps of cuEventRecord) and
EXTERNAL_CORRELATION records on this GPU? Each variant runs in a fresh process, records 200
tagged event pairs around a built-in engine inference, and prints the records CUPTI delivered.

    python benchmarks/probes/cuda_event_probe.py            # all variants
    python benchmarks/probes/cuda_event_probe.py --variant driver_api
"""

from __future__ import annotations

import argparse
import subprocess
import sys

VARIANTS = {
    # what gpuwatch's tracer does: enable after the CUDA context exists
    "after_context": dict(before_context=False, api_kinds=()),
    # CUPTI enabled before the first CUDA call (the context is created under CUPTI)
    "before_context": dict(before_context=True, api_kinds=()),
    # external correlation is documented per API record: also trace the driver API
    "driver_api": dict(before_context=False, api_kinds=("DRIVER",)),
    "driver_api_before_context": dict(before_context=True, api_kinds=("DRIVER", "RUNTIME")),
    # event synchronisation records (cuEventSynchronize) carry cudaEventSyncId
    "synchronization": dict(before_context=True, api_kinds=("DRIVER", "SYNCHRONIZATION")),
}


def run_variant(name: str) -> None:
    from cupti import cupti

    from gpuwatch.bindings.builtin import PRESETS, BuiltinEngine
    from gpuwatch.bindings.cuda import CudaRuntime

    v = VARIANTS[name]
    by_kind: dict[str, int] = {}
    samples: dict[str, str] = {}

    def requested() -> tuple[int, int]:
        return 8 << 20, 0

    def completed(acts: list) -> None:
        for a in acts:
            k = cupti.ActivityKind(a.kind).name
            by_kind[k] = by_kind.get(k, 0) + 1
            if k not in samples and k in ("CUDA_EVENT", "EXTERNAL_CORRELATION", "SYNCHRONIZATION"):
                samples[k] = repr({f: getattr(a, f, None) for f in (
                    "correlation_id", "external_id", "device_timestamp", "event_id",
                    "cuda_event_sync_id", "type", "start", "end")})

    def enable() -> list[str]:
        problems = []
        cupti.activity_register_callbacks(requested, completed)
        for k in ("CONCURRENT_KERNEL", "CUDA_EVENT", "EXTERNAL_CORRELATION", *v["api_kinds"]):
            try:
                cupti.activity_enable(getattr(cupti.ActivityKind, k))
            except Exception as e:
                problems.append(f"enable {k}: {type(e).__name__}: {e}")
        try:
            cupti.activity_enable_cuda_event_device_timestamps(1)
        except Exception as e:
            problems.append(f"device timestamps: {type(e).__name__}: {e}")
        return problems

    problems = enable() if v["before_context"] else []
    rt = CudaRuntime(0)
    stream = rt.stream()
    eng = BuiltinEngine(rt, stream, PRESETS["small"])
    if not v["before_context"]:
        problems = enable()
    ev0, ev1 = rt.event(), rt.event()
    for i in range(200):
        cupti.activity_push_external_correlation_id(cupti.ExternalCorrelationKind.CUSTOM0, 2 * i)
        rt.record(ev0, stream.handle)
        cupti.activity_pop_external_correlation_id(cupti.ExternalCorrelationKind.CUSTOM0)
        eng.infer()
        cupti.activity_push_external_correlation_id(cupti.ExternalCorrelationKind.CUSTOM0,
                                                    2 * i + 1)
        rt.record(ev1, stream.handle)
        cupti.activity_pop_external_correlation_id(cupti.ExternalCorrelationKind.CUSTOM0)
        rt.synchronize(ev1)
    cupti.activity_flush_all(1)
    print(f"{name}: {v}")
    for p in problems:
        print(f"  problem: {p}")
    print(f"  records by kind: {dict(sorted(by_kind.items()))}")
    for k, s in samples.items():
        print(f"  first {k}: {s}")
    rt.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--variant", choices=sorted(VARIANTS))
    a = ap.parse_args()
    if a.variant:
        run_variant(a.variant)
        return
    for name in VARIANTS:
        r = subprocess.run([sys.executable, __file__, "--variant", name], capture_output=True,
                           text=True, timeout=120)
        sys.stdout.write(r.stdout)
        if r.returncode:
            print(f"{name}: exit {r.returncode}: {r.stderr.strip().splitlines()[-1:]}")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
