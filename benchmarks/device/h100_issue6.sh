#!/usr/bin/env bash
# Issue 6's checks on a real GPU. On the GPU machine, from the repository root, with the cupti
# wheels carried in .whl:  OUT=/some/dir bash benchmarks/device/h100_issue6.sh
set -uo pipefail
R="$OUT/r"; mkdir -p "$R"
source benchmarks/device/device_setup.sh
python3 -m pytest -m gpu -q tests/test_gpu.py 2>&1 | tee "$R/gpu_tests.txt" | tail -5
# A fed engine and a starved one (host spins 200 us between launches), with kernel tracing
python3 -m gpuwatch.record --kernels --gap 0,20 --iters 300 --pre-post \
    --out "$R/h100_kernels_small.parquet" 2>&1 | tee "$R/record_kernels_small.txt"
python3 -m gpuwatch.record --kernels --engine builtin:small@200 --gap 0,20 --iters 200 \
    --out "$R/h100_kernels_starved.parquet" 2>&1 | tee "$R/record_kernels_starved.txt"
python3 benchmarks/probes/kernel_check.py "$R/h100_kernels_small.parquet" \
    "$R/h100_kernels_starved.parquet" 2>&1 | tee "$R/kernel_check.txt"
# Kernel-tracing overhead, interleaved (tracing toggled every 5 inferences)
python3 benchmarks/overhead.py --out "$R" --what kernels --modes process --pairs 300 \
    --block 5 2>&1 | tee "$R/overhead_kernels.txt"
python3 benchmarks/probes/pm_sampling_probe.py 2>&1 | tee "$R/pm_sampling_probe.txt"
tar czf "$OUT/results6.tgz" -C "$OUT" r
