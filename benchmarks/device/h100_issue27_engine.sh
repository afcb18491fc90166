#!/usr/bin/env bash
# Issue 27 on the lent H100, third call: a gpuwatch engine's infer + synchronize against its raw
# object after synchronize stopped handing each row to the writer one at a time
# (engine_overhead.py, gaps 0 and 5 ms), the engine path's call -> result in a user's program
# (sync_switch), and the region tests on the GPU.
#   OUT=/some/dir bash benchmarks/device/h100_issue27_engine.sh     # about 3 minutes; $OUT/engine.tar.gz
set -uo pipefail
: "${OUT:?set OUT=/some/dir}"
R="$OUT/engine"; mkdir -p "$R"
export PYTHONUNBUFFERED=1
python3 -m pip install -q --no-index --no-deps --no-build-isolation -e . >/dev/null 2>&1 || { echo "install failed"; exit 1; }
{ date -u; git log -1 --format='%H %s'; git status --short | head -60; } > "$R/env.txt" 2>&1
for g in 0 5; do
  timeout 60 python3 benchmarks/engine_overhead.py --out "$R" --pairs 100 --gap-ms $g >> "$R/engine_overhead.txt" 2>&1
done; echo "== engine ($SECONDS s)"; cat "$R/engine_overhead.txt"
rm -f "$R"/*.parquet
OUT="$R" CASES="sync_switch" NO_INSTALL=1 timeout 90 bash benchmarks/device/h100_issue27.sh > "$R/cases.txt" 2>&1; echo "== cases ($SECONDS s)"; grep '^==' "$R/cases.txt"
timeout 120 python3 -X faulthandler -m pytest -q -ra tests/test_region.py tests/test_engines.py tests/test_gpu_user_code.py \
    > "$R/gpu_tests.txt" 2>&1; echo "== tests ($SECONDS s)"; tail -n 3 "$R/gpu_tests.txt"
rm -f "$R/issue27.tar.gz"
tar czf "$OUT/engine.tar.gz" -C "$OUT" engine
echo "total $SECONDS s"
