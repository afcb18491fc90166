#!/usr/bin/env bash
# Session 16's device call: the timed path's overhead against a bare torch-event loop (the
# attribute test added to s.infer / s.span at 3a18bbb..07ac0d7 was never A/B'd on a GPU), then the
# README's test command as written. Results under $OUT.
set -uo pipefail
python3 -m pip install -q --no-index --no-deps scratch/ruptures-*.whl > /dev/null 2>&1
python3 -m pip install -q --no-index --no-deps --no-build-isolation -e . > /dev/null 2>&1
python3 setup.py build_ext --inplace > /dev/null 2>&1
{ git log -1 --format=%H 2>/dev/null; md5sum gpuwatch/session.py gpuwatch/regions/*.c 2>/dev/null; nvidia-smi --query-gpu=name,driver_version,clocks.max.sm,power.limit --format=csv,noheader; nproc; python3 -c "import torch, pyarrow; print('torch', torch.__version__, 'pyarrow', pyarrow.__version__)"; } > "$OUT/env.txt" 2>&1
echo "== overhead ($SECONDS s)"
timeout 200 python3 benchmarks/user_overhead.py --out "$OUT/overhead" --pairs 40 > "$OUT/overhead_console.txt" 2>&1; echo "rc=$?" >> "$OUT/overhead_console.txt"
tail -12 "$OUT/overhead_console.txt"
echo "== README tests ($SECONDS s)"
timeout $((560 - SECONDS)) bash -c 'python3 -m pytest -p no:cacheprovider -rfs -n auto --dist worksteal -m "not serial" > "$0/parallel.txt" 2>&1; echo "rc=$?" >> "$0/parallel.txt"; python3 -m pytest -p no:cacheprovider -rfs -n auto --dist loadfile -m serial > "$0/serial.txt" 2>&1; echo "rc=$?" >> "$0/serial.txt"' "$OUT"
tail -6 "$OUT/parallel.txt" "$OUT/serial.txt"
echo "== done ($SECONDS s)"
