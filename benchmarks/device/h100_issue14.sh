#!/usr/bin/env bash
# Issue 14 on the lent H100: the in-band SM clock probe, validated and costed.
#   OUT=/some/dir bash benchmarks/device/h100_issue14.sh        (about 5 minutes)
# (a) a light model at the application clock, (b) a power-capped GEMM: in-band vs NVML over time,
# (c) launch-bound (conv net) and GPU-bound (GEMM) models, (d) torch's current stream, a user
# stream and a CUDA graph (tests/test_gpu_probe.py), the builtin engine on cuda-python's stream;
# cost: the user-code overhead benchmark (A/B against a bare loop) with the probe off and on.
set -uo pipefail
R="$OUT/probe"; mkdir -p "$R"
export PYTHONUNBUFFERED=1
python3 -m pip install -q --no-index --no-deps --no-build-isolation -e . >/dev/null 2>&1 || exit 1
python3 -c "from gpuwatch.bindings.cuda import native_module; print('C extension:', native_module() is not None)" | tee "$R/versions.txt"
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.applications.graphics,clocks.max.sm,power.limit --format=csv >> "$R/versions.txt"
REC="timeout 120 python3 -m gpuwatch.record --probe --sample-hz 200"
$REC --torch gpuwatch.bindings.torch:convnet --gap 0,20 --iters 400 --out "$R/convnet.parquet" 2>&1 | tee "$R/record.txt"
$REC --torch gpuwatch.bindings.torch:convnet --cuda-graph --gap 0 --iters 300 --out "$R/convnet_graph.parquet" 2>&1 | tee -a "$R/record.txt"
$REC --engine builtin:small --gap 0,20 --iters 300 --out "$R/builtin.parquet" 2>&1 | tee -a "$R/record.txt"
$REC --torch gpuwatch.bindings.torch:gemm,count=4 --gap 0,20 --iters 1000 --out "$R/gemm_power_cap.parquet" 2>&1 | tee -a "$R/record.txt"
python3 benchmarks/probe_validation.py --out "$R" --timeline "$R/gemm_power_cap.parquet" \
    "$R"/convnet.parquet "$R"/convnet_graph.parquet "$R"/builtin.parquet "$R"/gemm_power_cap.parquet \
    2>&1 | tee "$R/probe_validation.txt"
timeout 150 python3 -m pytest -q -ra tests/test_gpu_probe.py 2>&1 | tee "$R/gpu_tests.txt" | tail -8
for probe in off on; do
  flag=""; [ "$probe" = on ] && flag="--probe"
  mkdir -p "$R/cost_$probe"
  timeout 150 python3 benchmarks/user_overhead.py --out "$R/cost_$probe" --pairs "${PAIRS:-120}" \
      --cases "eager, gap 0|eager, gap 20" $flag 2>&1 \
      | tee "$R/cost_$probe.txt" | tail -6
  rm -f "$R/cost_$probe"/*.parquet
done
tar czf "$OUT/probe.tgz" -C "$OUT" probe
