#!/usr/bin/env bash
# Issue 18 on the lent H100: an unmodified PyTorch program through `gpuwatch run`, against
# `record --torch` of the same model. Traces land in $OUT (analysed where ruptures is installed).
#   OUT=/some/dir bash benchmarks/device/h100_issue18.sh
set -uo pipefail
mkdir -p "$OUT/ovh"
export PYTHONUNBUFFERED=1
python3 -m pip install -q --no-index --no-deps --no-build-isolation -e . >/dev/null 2>&1 || exit 1
python3 -m pytest -q -ra tests/test_gpu_run.py 2>&1 | tee "$OUT/gpu_test.txt" | tail -5
python3 benchmarks/run_app.py 300 0.02 2> "$OUT/plain.txt"; echo "plain exit $?" >> "$OUT/plain.txt"
python3 -m gpuwatch run -q -o "$OUT/run.parquet" benchmarks/run_app.py 300 0.02 \
    2> "$OUT/run.txt"; echo "run exit $?" >> "$OUT/run.txt"
python3 -m gpuwatch.record --torch benchmarks.run_app:make --gap 0,20 --iters 300 \
    -o "$OUT/record.parquet" > "$OUT/record.txt" 2>&1; echo "record exit $?" >> "$OUT/record.txt"
nvidia-smi --query-gpu=name,driver_version --format=csv > "$OUT/nvidia_smi.csv" 2>&1
# The cost of regions found from module calls, against bare torch events, interleaved
if [ "${OVERHEAD:-1}" = 1 ]; then
  python3 -m gpuwatch run -q -o "$OUT/ovh/run.parquet" benchmarks/run_overhead.py "$OUT/ovh" \
      "${PAIRS:-200}" 2> "$OUT/ovh_run.txt" || true
fi
