#!/usr/bin/env bash
# The README's test command, as written, on the GPU machine: first (b594f6a's tree + the
# session's work) with tests/conftest.py's one_gpu_test_at_a_time (GPU tests wait for each
# other across xdist workers), then with gpu_tests_run_alone (each GPU test runs alone):
# readme_tests_gpu_one_at_a_time/ and readme_tests_gpu_alone/.
#   RUPTURES_WHEEL=... bash benchmarks/results/h100_layout_2026-12-07/scripts/readme_tests.sh
set -uo pipefail
R="$OUT/readme_tests"; mkdir -p "$R"
python3 -m pip install -q --no-index --no-deps "${RUPTURES_WHEEL:?see full_suite.sh}" > /dev/null 2>&1
python3 -m pip install -q --no-index --no-deps --no-build-isolation -e . > /dev/null 2>&1
python3 setup.py build_ext --inplace > /dev/null 2>&1
{ git log -1 --format=%H; md5sum tests/conftest.py gpuwatch/analysis/merge.py; grep -c gpu_tests_run_alone tests/conftest.py; } > "$R/commit.txt" 2>&1
timeout 540 bash -c 'python3 -m pytest -p no:cacheprovider -rfs -n auto --dist worksteal -m "not serial" > "$0/parallel.txt" 2>&1; echo "rc=$?" >> "$0/parallel.txt"; python3 -m pytest -p no:cacheprovider -rfs -n auto --dist loadfile -m serial > "$0/serial.txt" 2>&1; echo "rc=$?" >> "$0/serial.txt"' "$R"
tail -4 "$R/parallel.txt"; tail -3 "$R/serial.txt"
