#!/usr/bin/env bash
# Issue 3's checks on a real GPU, in one go (about 4 minutes on an H100). On the GPU machine,
# from the repository root:  OUT=/some/dir bash benchmarks/device/h100_issue3.sh
# Everything lands in $OUT/r and $OUT/results.tgz; see benchmarks/results/README.md.
set -uo pipefail
export PYTHONUNBUFFERED=1
R="$OUT/r"; mkdir -p "$R"
python3 -m pip install -q --no-index --no-deps --no-build-isolation -e . || exit 1
{ date -u; date +%z; nvidia-smi; nvidia-smi -q -d CLOCK,PERFORMANCE,POWER; } > "$R/machine.txt" 2>&1
python3 -m pytest -m gpu -q tests/test_gpu.py 2>&1 | tee "$R/gpu_tests.txt"
# (a) + (b): the built-in engine at gaps 0 and 20 ms, 800 iterations each, nvidia-smi beside it
python3 benchmarks/nvidia_smi.py record --trace "$R/h100_small_gap0_20.parquet" \
    --smi "$R/nvidia_smi.csv" -- --gap 0,20 --iters 800 2>&1 | tee "$R/record_small.txt"
python3 benchmarks/nvidia_smi.py compare --trace "$R/h100_small_gap0_20.parquet" \
    --smi "$R/nvidia_smi.csv" 2>&1 | tee "$R/nvidia_smi_compare.txt"
python3 -m gpuwatch.record --engine builtin:large --gap 0,20 --iters 800 --sample-hz 200 \
    --out "$R/h100_large_gap0_20.parquet" 2>&1 | tee "$R/record_large.txt"
# the small fixture for CPU tests
python3 -m gpuwatch.record --gap 0,20 --iters 150 --sample-hz 200 --pre-post \
    --out "$R/h100_fixture.parquet" 2>&1 | tee "$R/record_fixture.txt"
# (c) overhead, (d) rates and refresh, (e) alignment is in every trace's metadata
python3 benchmarks/overhead.py --out "$R" 2>&1 | tee "$R/overhead.txt"
python3 benchmarks/refresh.py --out "$R" --sampler process 2>&1 | tee "$R/refresh_process.txt"
python3 benchmarks/refresh.py --out "$R" --sampler thread --cycles 3 2>&1 | tee "$R/refresh_thread.txt"
tar czf "$OUT/results.tgz" -C "$OUT" r
