#!/usr/bin/env bash
# The C timed path (gpuwatch/regions/_native.c FastRegion: a whole region in one C call, torch's current
# stream read through c10) on the lent H100. From the repository root, one device call per PART:
#   OUT=/some/dir PART=tests  bash benchmarks/device/h100_c_path.sh  # GPU tests; gap-0 and GEMM overhead
#   OUT=/some/dir PART=gap20  bash benchmarks/device/h100_c_path.sh  # overhead with 20 ms gaps (GAP_PAIRS)
#   OUT=/some/dir PART=run    bash benchmarks/device/h100_c_path.sh  # gpuwatch run's overhead (MODES: calls nvtx kernels)
#   OUT=/some/dir PART=final  bash benchmarks/device/h100_c_path.sh  # GPU tests, then run's calls and NVTX overhead
# Every user_overhead run has the fourth arm (torch's stream read through torch's own getter).
set -uo pipefail
source benchmarks/device/device_setup.sh
R="$OUT/$PART"; mkdir -p "$R"
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.max.sm,pstate,power.draw,temperature.gpu \
    --format=csv > "$R/nvidia_smi_before.csv" 2>&1
python3 -c "import torch, cuda.bindings; print('torch', torch.__version__, 'cuda-bindings', cuda.bindings.__version__)" > "$R/versions.txt" 2>&1
nm -D --defined-only "$(python3 -c 'import torch, os; print(os.path.join(os.path.dirname(torch.__file__), "lib", "libc10_cuda.so"))')" \
    | grep -E "getCurrentCUDAStreamEa|CUDAStream6streamEv" >> "$R/versions.txt" 2>&1
gpu_tests() {
    python3 -X faulthandler -m pytest -q -ra tests/test_gpu_user_code.py tests/test_gpu_run.py \
        tests/test_native.py tests/test_region.py tests/test_autoregions.py tests/test_gpu.py \
        2>&1 | tee "$R/gpu_tests.txt" | tail -8
}
case "$PART" in
  final)
    gpu_tests
    OUT="$OUT" PART=run MODES="calls nvtx" bash "$0" ;;
  tests)
    gpu_tests
    timeout 200 python3 benchmarks/user_overhead.py --out "$R" --pairs "${PAIRS:-150}" --getter-arm \
        --cases "gap 0" 2>&1 | tee "$R/user_overhead.txt" | tail -8 ;;
  gap20)
    timeout 560 python3 benchmarks/user_overhead.py --out "$R" --gap-pairs "${GAP_PAIRS:-250}" \
        --getter-arm --cases "${CASES:-eager, gap 20 ms}" 2>&1 | tee "$R/user_overhead.txt" | tail -8 ;;
  run)
    PAIRS=${PAIRS:-300} GAP_PAIRS=${GAP_PAIRS:-200}
    for mode in ${MODES:-calls nvtx kernels}; do
      run_overhead "$R/ovh_$mode" "$mode" "$PAIRS" "$GAP_PAIRS" 280
    done ;;
esac
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.max.sm,pstate,power.draw,temperature.gpu \
    --format=csv > "$R/nvidia_smi_after.csv" 2>&1
tar czf "$OUT/$PART.tgz" -C "$OUT" "$PART"
