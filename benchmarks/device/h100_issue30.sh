#!/usr/bin/env bash
# Issue 30 on a lent GPU (H100 or H200): the GPU tests on this commit (the real-GPU path's
# signal handling, exit hooks and trace publishing changed), and the signal/exit faults made
# on the real GPU (benchmarks/faults_real_gpu.py). On an H200 (H200=1), also issue 28's H200
# part: the seed's experiment and the probe validation (h100_issue28.sh, SEED=1).
#   OUT=/some/dir bash benchmarks/device/h100_issue30.sh        # about 5 minutes (H200=1: 8)
# NAME=dir: results under $OUT/dir (default issue30). CHILD=1: also check that the sampler's
# own process on the real GPU loads no pandas while it writes its chunks (issue 31 part 3).
set -uo pipefail
: "${OUT:?set OUT=/some/dir}"
R="$OUT/${NAME:-issue30}"; mkdir -p "$R"
export PYTHONUNBUFFERED=1
python3 -m pip install -q --no-index --no-deps --no-build-isolation -e . >/dev/null 2>&1 || { echo "install failed"; exit 1; }
{ date -u; nproc; git log -1 --format='%H %s'; nvidia-smi --query-gpu=name,driver_version --format=csv; } > "$R/env.txt" 2>&1
cat "$R/env.txt"
timeout 240 python3 -X faulthandler -m pytest -q -ra -p no:cacheprovider tests/test_gpu_probe.py tests/test_gpu.py \
    tests/test_gpu_user_code.py tests/test_gpu_run.py tests/test_native.py > "$R/gpu_tests.txt" 2>&1
echo "== gpu tests ($SECONDS s)"; tail -n 4 "$R/gpu_tests.txt"
timeout 300 python3 benchmarks/faults_real_gpu.py --out "$R/faults" > "$R/faults.txt" 2>&1
echo "== faults ($SECONDS s)"; cut -c1-260 "$R/faults.txt"
if [ "${CHILD:-0}" = 1 ]; then
  python3 -m gpuwatch record --device auto --gap 0 --iters 20000 --quiet --out "$R/child.parquet" &
  rec=$!; sleep 4
  for pid in $(pgrep -f gpuwatch.sampler_process); do
    echo "sampler child $pid: pandas mappings $(grep -c /pandas/ /proc/$pid/maps), pyarrow" \
         "$(grep -c pyarrow /proc/$pid/maps), $(grep VmRSS /proc/$pid/status)"
  done > "$R/child.txt"
  wait $rec; echo "record exit $?" >> "$R/child.txt"
  python3 -c "import gpuwatch, sys; t = gpuwatch.load(sys.argv[1]); print(t.meta['status'], len(t.measured()), 'inferences,', len(t.samples), 'samples; sampler', {k: t.meta['sampler'].get(k) for k in ('mode', 'achieved_hz', 'errors', 'error')})" "$R/child.parquet" >> "$R/child.txt" 2>&1
  rm -f "$R/child.parquet"
  echo "== sampler child ($SECONDS s)"; cat "$R/child.txt"
fi
if [ "${H200:-0}" = 1 ]; then
  TESTS=0 COST=0 PHYSICS=0 SEED=1 OUT="$OUT" bash benchmarks/device/h100_issue28.sh
fi
echo "total $SECONDS s"
