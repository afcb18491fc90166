#!/usr/bin/env bash
# Issue 18, second part, on the lent H100: NVTX ranges and kernel bursts as regions on a real
# GPU, and what regions found from calls, NVTX and CUPTI cost, interleaved against bare torch
# events (benchmarks/run_overhead.py). From the repository root, with the cupti-python wheels
# carried in .whl:
#   OUT=/some/dir PART=tests|overhead|nvtx|kernels [PAIRS=400 GAP_PAIRS=300] \
#       bash benchmarks/device/h100_issue18_regions.sh
set -uo pipefail
source benchmarks/device/device_setup.sh
R="$OUT/r"; mkdir -p "$R"
PAIRS=${PAIRS:-400}; GAP_PAIRS=${GAP_PAIRS:-300}
overhead() {  # overhead MODE [run options...]
  local mode=$1; shift; local d="$R/ovh_$mode"; mkdir -p "$d"
  python3 -m gpuwatch run -q "$@" -o "$d/run.parquet" benchmarks/run_overhead.py "$d" \
      "$PAIRS" "$mode" "$GAP_PAIRS" 2> "$d/run_stderr.txt"
  python3 benchmarks/run_overhead.py --summarise "$d" > "$d/summary.json" 2>&1
  rm -f "$d/run.parquet"  # (large; the summary and blocks.json keep what was measured)
}
case "${PART:-tests}" in
  tests)
    nvidia-smi --query-gpu=name,driver_version,clocks.sm,power.draw --format=csv > "$R/nvidia_smi.csv"
    python3 -c "import cupti, torch; print('cupti-python', cupti.__version__ if hasattr(cupti, '__version__') else '?', 'torch', torch.__version__)" > "$R/versions.txt" 2>&1
    python3 -m pytest -q -ra tests/test_gpu_run.py 2>&1 | tee "$R/gpu_run_tests.txt" | tail -5
    # traces of the same program, found three ways, for analysis on a machine with ruptures
    python3 -m gpuwatch run -q -o "$R/calls.parquet" benchmarks/run_app.py 300 0.02
    python3 -m gpuwatch run -q -o "$R/nvtx.parquet" benchmarks/run_app.py 300 0.02 nvtx
    python3 -m gpuwatch run -q --regions kernels -o "$R/kernels.parquet" \
        benchmarks/run_app.py 300 0.02 ;;
  overhead)
    overhead calls
    overhead nvtx --regions nvtx ;;
  nvtx)
    overhead nvtx --regions nvtx ;;
  kernels)
    overhead kernels --regions kernels ;;
esac
tar czf "$OUT/issue18_${PART:-tests}.tgz" -C "$OUT" r
