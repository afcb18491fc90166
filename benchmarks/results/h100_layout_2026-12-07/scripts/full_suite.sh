#!/usr/bin/env bash
# The whole test suite on the GPU machine (GPU tests included), ruptures installed from a wheel carried in scratch/.
set -uo pipefail
R="$OUT/full"; mkdir -p "$R"
python3 -m pip install -q --no-index --no-deps "${RUPTURES_WHEEL:?a ruptures wheel for the device's Python (pip download ruptures --no-deps --only-binary=:all: --python-version 3.12)}" > "$R/ruptures.txt" 2>&1 || echo "ruptures install failed"
python3 -m pip install -q --no-index --no-deps --no-build-isolation -e . > /dev/null 2>&1 || echo "install failed"
python3 setup.py build_ext --inplace > /dev/null 2>&1 || echo "build failed"
{ nvidia-smi --query-gpu=name,driver_version --format=csv,noheader; python3 -c "import numpy, pandas, pyarrow, scipy; print(numpy.__version__, pandas.__version__, pyarrow.__version__, scipy.__version__)"; nproc; } > "$R/machine.txt" 2>&1
cat "$R/machine.txt"
timeout 330 python3 -m pytest -q -p no:cacheprovider -n 8 -m "not serial" -rfs tests > "$R/parallel.txt" 2>&1; echo "rc=$?" >> "$R/parallel.txt"
tail -25 "$R/parallel.txt"
timeout $((560 - SECONDS)) python3 -m pytest -q -p no:cacheprovider -n 4 --dist loadfile -m serial -rfs tests > "$R/serial.txt" 2>&1; echo "rc=$?" >> "$R/serial.txt"
tail -12 "$R/serial.txt"
echo "== done ($SECONDS s)"
