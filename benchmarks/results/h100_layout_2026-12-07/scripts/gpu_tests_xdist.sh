#!/usr/bin/env bash
# The GPU test files under xdist (-n auto, as the README's command runs them) beside CPU-heavy
# analysis tests, after tests/conftest.py's one_gpu_test_at_a_time (dc7fe52): the GPU tests wait
# for each other across workers. (The README's whole command did not fit the session's device time.)
#   RUPTURES_WHEEL=... bash benchmarks/results/h100_layout_2026-12-07/scripts/gpu_tests_xdist.sh
set -uo pipefail
R="$OUT/gpu_tests_xdist"; mkdir -p "$R"
python3 -m pip install -q --no-index --no-deps "${RUPTURES_WHEEL:?see full_suite.sh}" > /dev/null 2>&1
python3 -m pip install -q --no-index --no-deps --no-build-isolation -e . > /dev/null 2>&1
python3 setup.py build_ext --inplace > /dev/null 2>&1
timeout 220 python3 -m pytest -p no:cacheprovider -q -rfs -n auto --dist worksteal tests/test_gpu.py tests/test_gpu_probe.py tests/test_gpu_user_code.py tests/test_analysis_wall.py tests/test_attribution_bounds.py > "$R/tests.txt" 2>&1
echo "rc=$?" >> "$R/tests.txt"
tail -8 "$R/tests.txt"
