#!/usr/bin/env bash
# Issue 28 on a lent GPU (H100, or H200 with the same script): the in-band clock probe on by
# default, sampled (a region whenever 5 ms have passed since the last stamped one began).
#   OUT=/some/dir bash benchmarks/device/h100_issue28.sh        # about 6 minutes
# 1. the GPU tests; 2. the cost: user_overhead.py --probe-arms (bare loop, gpuwatch with the
# default probe, probe off, every region stamped, interleaved blocks in one session) for the
# launch-bound conv net and an 8192^2 GEMM, back to back and with 20 ms gaps; 3. the physics
# check (probe_physics.py: cycles per inference at two clocks, compute- and memory-bound);
# 4. (SEED=1) the seed's experiment (gap 0 against 20 ms) with the default probe, builtin engine
# and PyTorch conv net, and the probe validation on those traces. TESTS=0, COST=0, PHYSICS=0
# leave parts out (the H200 call: TESTS=1 COST=0 PHYSICS=0 SEED=1).
# Everything lands in ONE archive, $OUT/issue28.tar.gz. Never changes clocks, power or modes.
set -uo pipefail
: "${OUT:?set OUT=/some/dir}"
R="$OUT/issue28"; mkdir -p "$R"
export PYTHONUNBUFFERED=1
python3 -m pip install -q --no-index --no-deps --no-build-isolation -e . >/dev/null 2>&1 || { echo "install failed"; exit 1; }
{ date -u; nproc; python3 -c 'import torch; print("torch", torch.__version__)'; git log -1 --format='%H %s'; git status --short | head -60; } > "$R/env.txt" 2>&1
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.applications.graphics,clocks.max.sm,power.limit,pstate,power.draw,temperature.gpu --format=csv > "$R/nvidia_smi_before.csv" 2>&1
cat "$R/nvidia_smi_before.csv"
if [ "${TESTS:-1}" = 1 ]; then
  timeout 240 python3 -X faulthandler -m pytest -q -ra tests/test_gpu_probe.py tests/test_gpu.py \
      tests/test_gpu_user_code.py tests/test_gpu_run.py tests/test_native.py \
      > "$R/gpu_tests.txt" 2>&1; echo "== gpu tests ($SECONDS s)"; tail -n 6 "$R/gpu_tests.txt"
fi
if [ "${COST:-1}" = 1 ]; then
timeout 120 python3 benchmarks/user_overhead.py --out "$R/cost_gap0" --pairs 120 --probe-arms \
    --cases "convnet fp16 eager, gap 0|gemm 8192 fp16, gap 0" > "$R/cost_gap0.txt" 2>&1
echo "== cost gap 0 ($SECONDS s)"; tail -n 4 "$R/cost_gap0.txt" | cut -c1-600
timeout 150 python3 benchmarks/user_overhead.py --out "$R/cost_gap20" --gap-pairs 30 --probe-arms \
    --cases "convnet fp16 eager, gap 20 ms|gemm 8192 fp16, gap 20 ms" > "$R/cost_gap20.txt" 2>&1
echo "== cost gap 20 ($SECONDS s)"; tail -n 4 "$R/cost_gap20.txt" | cut -c1-600
rm -f "$R"/cost_*/*.parquet
fi
if [ "${PHYSICS:-1}" = 1 ]; then
timeout 150 python3 benchmarks/probe_physics.py --out "$R/physics" --seconds 10 > "$R/physics.txt" 2>&1
echo "== physics ($SECONDS s)"; tail -n 8 "$R/physics.txt" | cut -c1-300
fi
if [ "${SEED:-0}" = 1 ]; then
  timeout 120 python3 -m gpuwatch.record --gap 0,20 --iters 800 --out "$R/seed_gap0_20.parquet" --quiet \
      > "$R/seed_gap0_20.txt" 2>&1; echo "== seed gap 0/20 ($SECONDS s)"
  timeout 120 python3 -m gpuwatch.record --torch gpuwatch.bindings.torch:convnet --gap 0,20 --iters 800 \
      --out "$R/seed_torch_gap0_20.parquet" --quiet > "$R/seed_torch_gap0_20.txt" 2>&1; echo "== seed torch ($SECONDS s)"
  python3 benchmarks/probe_validation.py --out "$R/validation" "$R"/seed_*.parquet > "$R/validation.txt" 2>&1
  tail -n 12 "$R/validation.txt" | cut -c1-300
fi
nvidia-smi --query-gpu=name,driver_version,clocks.sm,pstate,power.draw,temperature.gpu --format=csv > "$R/nvidia_smi_after.csv" 2>&1
tar czf "$OUT/issue28.tar.gz" -C "$OUT" issue28
ls -la "$OUT/issue28.tar.gz"; echo "total $SECONDS s"
