#!/usr/bin/env bash
# The GPU test files alone, one test at a time (no xdist), on the same machine right after full_suite.sh.
set -uo pipefail
mkdir -p "$OUT/serial_gpu"
python3 -m pip install -q --no-index --no-deps "${RUPTURES_WHEEL:?see full_suite.sh}" > /dev/null 2>&1
python3 -m pip install -q --no-index --no-deps --no-build-isolation -e . > /dev/null 2>&1
python3 setup.py build_ext --inplace > /dev/null 2>&1
timeout 400 python3 -m pytest -q -p no:cacheprovider -rfs tests/test_gpu.py tests/test_gpu_probe.py tests/test_gpu_user_code.py > "$OUT/serial_gpu/tests.txt" 2>&1
echo "rc=$?" >> "$OUT/serial_gpu/tests.txt"
