#!/usr/bin/env bash
# Issue 27 on the lent H100, second call: the GPU tests, what the timed path costs with every
# new host signal on (user_overhead.py: s.infer against a bare torch-event loop; engine_overhead.py:
# a gpuwatch engine's infer + synchronize against its raw object), the engine path's own
# call -> result again after synchronize stopped resolving rows (sync_switch), and varied causes.
#   OUT=/some/dir bash benchmarks/device/h100_issue27_cost.sh       # about 8 minutes
# Everything lands in ONE archive, $OUT/cost.tar.gz. Never changes clocks, power or modes.
set -uo pipefail
: "${OUT:?set OUT=/some/dir}"
R="$OUT/cost"; mkdir -p "$R"
export PYTHONUNBUFFERED=1
python3 -m pip install -q --no-index --no-deps --no-build-isolation -e . >/dev/null 2>&1 || { echo "install failed"; exit 1; }
{ date -u; nproc; python3 -c 'import torch; print("torch", torch.__version__)'; git log -1 --format='%H %s'; git status --short | head -60; } > "$R/env.txt" 2>&1
nvidia-smi --query-gpu=name,driver_version,clocks.sm,pstate,power.draw,temperature.gpu --format=csv > "$R/nvidia_smi_before.csv" 2>&1
timeout 200 python3 -X faulthandler -m pytest -q -ra tests/test_gpu_user_code.py tests/test_gpu_run.py \
    tests/test_native.py tests/test_region.py tests/test_autoregions.py tests/test_gpu.py \
    > "$R/gpu_tests.txt" 2>&1; echo "== gpu tests ($SECONDS s)"; tail -n 3 "$R/gpu_tests.txt"
timeout 100 python3 benchmarks/user_overhead.py --out "$R/user_gap0" --pairs 120 --cases "gap 0" \
    > "$R/user_gap0.txt" 2>&1; echo "== user gap 0 ($SECONDS s)"; tail -n 5 "$R/user_gap0.txt" | cut -c1-400
timeout 100 python3 benchmarks/user_overhead.py --out "$R/user_gap20" --gap-pairs 40 \
    --cases "eager, gap 20 ms" > "$R/user_gap20.txt" 2>&1; echo "== user gap 20 ($SECONDS s)"; tail -n 4 "$R/user_gap20.txt" | cut -c1-400
for g in 0 5; do
  timeout 60 python3 benchmarks/engine_overhead.py --out "$R/engine" --pairs 100 --gap-ms $g \
      >> "$R/engine_overhead.txt" 2>&1
done; echo "== engine ($SECONDS s)"; tail -n 2 "$R/engine_overhead.txt"
rm -f "$R"/*/*.parquet  # (the benchmarks' own traces: not needed, and large)
OUT="$R" CASES="sync_switch cotenant_heavier python_thread_2000 busy_host_gap2" NO_INSTALL=1 BUDGET_S=480 \
    timeout 300 bash benchmarks/device/h100_issue27.sh > "$R/cases.txt" 2>&1; echo "== cases ($SECONDS s)"; grep '^==' "$R/cases.txt"
nvidia-smi --query-gpu=name,driver_version,clocks.sm,pstate,power.draw,temperature.gpu --format=csv > "$R/nvidia_smi_after.csv" 2>&1
rm -f "$R/issue27.tar.gz"
tar czf "$OUT/cost.tar.gz" -C "$OUT" cost
ls -la "$OUT/cost.tar.gz"; echo "total $SECONDS s"
