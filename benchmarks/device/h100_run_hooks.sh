#!/usr/bin/env bash
# gpuwatch run's hooks in C (gpuwatch/regions/_autoregions.c: NVTX push/pop and module calls open and
# close regions with no Python frame of gpuwatch's) and the 1 s clock poll (regions/timer.py POLL_NS),
# on the lent H100. From the repository root, one device call:
#   OUT=/some/dir [NAME=run_hooks] [TESTS=1] bash benchmarks/device/h100_run_hooks.sh
# 1. the GPU tests; 2. the hooks' host cost on this host (benchmarks/run_host_cost.py, C, then
# Python hooks); 3. gpuwatch run's overhead against a bare loop (benchmarks/run_overhead.py),
# MODES (default: nvtx calls), PAIRS block pairs at gap 0 and GAP_PAIRS at 20 ms gaps.
set -uo pipefail
source benchmarks/device/device_setup.sh
N=${NAME:-run_hooks}; R="$OUT/$N"; mkdir -p "$R"
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.max.sm,pstate,power.draw,temperature.gpu \
    --format=csv > "$R/nvidia_smi_before.csv" 2>&1
python3 -c "import torch, cuda.bindings; print('torch', torch.__version__, 'cuda-bindings', cuda.bindings.__version__)" > "$R/versions.txt" 2>&1
if [ "${TESTS:-1}" = 1 ]; then
  timeout 240 python3 -X faulthandler -m pytest -q -ra tests/test_gpu_user_code.py tests/test_gpu_run.py \
      tests/test_native.py tests/test_regions/timer.py tests/test_autoregions.py tests/test_gpu.py \
      2>&1 | tee "$R/gpu_tests.txt" | tail -4
fi
timeout 60 python3 benchmarks/run_host_cost.py --n 200 --json "$R/host_cost_c.json" > "$R/host_cost_c.txt" 2>&1
timeout 60 python3 benchmarks/run_host_cost.py --n 200 --python --json "$R/host_cost_python.json" > "$R/host_cost_python.txt" 2>&1
cat "$R/host_cost_c.txt"
PAIRS=${PAIRS:-200} GAP_PAIRS=${GAP_PAIRS:-250}
for mode in ${MODES:-nvtx calls}; do
  run_overhead "$R/ovh_$mode" "$mode" "$PAIRS" "$GAP_PAIRS" 200
  grep -A3 '"gap 20 ms, \(gpu\|wall\)_ms ratio"' "$R/ovh_$mode/summary.json" | grep -v iqr | tr -d '\n '
  echo " <- $mode"
done
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.max.sm,pstate,power.draw,temperature.gpu \
    --format=csv > "$R/nvidia_smi_after.csv" 2>&1
tar czf "$OUT/$N.tgz" -C "$OUT" "$N"
