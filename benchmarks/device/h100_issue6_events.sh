#!/usr/bin/env bash
# Issue 6, second pass on a real GPU: which CUPTI set-up delivers CUDA-event device timestamps;
# then, with the tracer enabling CUPTI before the CUDA context and flushing between timed
# regions: are windows tightened, what does tracing cost, and does the tail of a 20 ms-gap loop
# stay where it was?   OUT=/some/dir bash benchmarks/device/h100_issue6_events.sh
set -uo pipefail
R="$OUT/r"; mkdir -p "$R"
source benchmarks/device/device_setup.sh
[ -n "${SKIP_PROBE:-}" ] || python3 benchmarks/probes/cuda_event_probe.py 2>&1 | tee "$R/cuda_event_probe.txt"
python3 -m pytest -m gpu -q tests/test_gpu.py -k cupti 2>&1 | tee "$R/gpu_test_cupti.txt" | tail -3
python3 -m gpuwatch.record --kernels --gap 0,20 --iters 300 --pre-post \
    --out "$R/h100_kernels_small.parquet" 2>&1 | tee "$R/record_kernels_small.txt"
python3 -m gpuwatch.record --kernels --engine builtin:small@200 --gap 0,20 --iters 200 \
    --out "$R/h100_kernels_starved.parquet" 2>&1 | tee "$R/record_kernels_starved.txt"
for rep in 1 2 3; do
  python3 -m gpuwatch.record --gap 20 --iters 300 --quiet --out "$R/tail_plain_$rep.parquet"
  python3 -m gpuwatch.record --gap 20 --iters 300 --quiet --kernels --out "$R/tail_kernels_$rep.parquet"
done
python3 - "$R" <<'PY' 2>&1 | tee "$R/tail.txt"
import sys, glob, numpy as np, gpuwatch
for f in sorted(glob.glob(sys.argv[1] + "/tail_*.parquet")):
    t = gpuwatch.load(f)
    ms = t.measured().gpu_ms.to_numpy(dtype=float)
    kt = t.meta.get("kernel_trace") or {}
    ev = int((t.kernels["kind"] == "cuda_event").sum()) if len(t.kernels) else 0
    print(f"{f.split('/')[-1]:24s} n={ms.size} p50={np.median(ms):.3f} p90={np.percentile(ms,90):.3f} "
          f"p99={np.percentile(ms,99):.3f} max={ms.max():.3f} ms  cuda_event rows={ev} "
          f"events={kt.get('cuda_event_device_timestamps')}")
PY
python3 benchmarks/overhead.py --out "$R" --what kernels --modes process --pairs 300 \
    --block 5 2>&1 | tee "$R/overhead_kernels.txt"
