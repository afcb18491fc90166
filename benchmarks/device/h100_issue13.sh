#!/usr/bin/env bash
# Issue 13 on the lent H100: timing the user's own code. One device call per PART:
#   OUT=/some/dir PART=tests  bash benchmarks/device/h100_issue13.sh  # GPU tests (new and old), program shapes
#   OUT=/some/dir PART=bench  bash benchmarks/device/h100_issue13.sh  # overhead: anatomy, then A/B vs a bare loop
#     (PAIRS, GAP_PAIRS: pairs of blocks for the cases without and with gaps; ROUNDS: anatomy)
#   OUT=/some/dir PART=all    bash benchmarks/device/h100_issue13.sh  # tests, bench and cost, time-boxed
#   OUT=/some/dir PART=cost   bash benchmarks/device/h100_issue13.sh  # where a region's cost goes
# Results land in $OUT/PART.tgz (and the main logs beside it).
set -uo pipefail
R="$OUT/$PART"; mkdir -p "$R"
export PYTHONUNBUFFERED=1
python3 -m pip install -q --no-index --no-deps --no-build-isolation -e . >/dev/null 2>&1 || exit 1
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.max.sm,pstate,power.draw,temperature.gpu \
    --format=csv > "$R/nvidia_smi_before.csv" 2>&1
python3 -c "import torch, cuda.bindings, pynvml; print('torch', torch.__version__, 'cuda-bindings', cuda.bindings.__version__)" | tee "$R/versions.txt"
python3 -c "from gpuwatch.bindings.cuda import CudaRuntime; print('event calls through gpuwatch/regions/_native.c:', CudaRuntime(0).native_calls)" | tee -a "$R/versions.txt"
case "$PART" in
all)  # both, each bounded so that one device call (10 minutes) returns what each made
  timeout "${TESTS_S:-330}" env PART=tests OUT="$OUT" bash "$0"
  timeout "${BENCH_S:-200}" env PART=bench OUT="$OUT" bash "$0"
  timeout "${COST_S:-90}" env PART=cost OUT="$OUT" bash "$0"
  exit 0
  ;;
tests)
  python3 -X faulthandler -m pytest -q -ra tests/test_gpu_user_code.py tests/test_gpu.py \
      tests/test_native.py 2>&1 | tee "$R/gpu_tests.txt" | tail -25
  # the program shapes of the CPU tests, on the real GPU with the default (process) sampler
  GPUWATCH_SHAPES_DEVICE=auto python3 -m pytest -q -ra tests/test_program_shapes.py 2>&1 \
      | tee "$R/program_shapes.txt" | tail -5
  ;;
cost)
  python3 benchmarks/probes/region_cost.py --out "$R" 2>&1 | tee "$R/region_cost.txt" | tail -60
  ;;
bench)
  python3 benchmarks/probes/overhead_anatomy.py --out "$R" --rounds "${ROUNDS:-300}" \
      2>&1 | tee "$R/overhead_anatomy.txt" | tail -3
  python3 benchmarks/user_overhead.py --out "$R" --pairs "${PAIRS:-200}" --gap-pairs "${GAP_PAIRS:-0}" --block "${BLOCK:-10}" \
      2>&1 | tee "$R/user_overhead.txt" | tail -12
  ;;
esac
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.max.sm,pstate,power.draw,temperature.gpu \
    --format=csv > "$R/nvidia_smi_after.csv" 2>&1
cp "$R"/*.txt "$OUT"/ 2>/dev/null
tar czf "$OUT/$PART.tgz" -C "$OUT" "$PART"
