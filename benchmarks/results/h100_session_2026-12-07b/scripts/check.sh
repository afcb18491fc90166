#!/usr/bin/env bash
# This session's changes on a real GPU: record the README's sweep and analyse it (the trace is
# written with page checksums: a flipped page must fail to load), then the README's test
# command as written (TESTS=gpu: the GPU tests only). Results under $OUT/session_check/.
#   RUPTURES_WHEEL=scratch/ruptures-*.whl bash benchmarks/results/h100_session_2026-12-07b/scripts/check.sh
set -uo pipefail
R="$OUT/session_check"; mkdir -p "$R"
python3 -m pip install -q --no-index --no-deps "${RUPTURES_WHEEL:?give the ruptures wheel}" > /dev/null 2>&1
python3 -m pip install -q --no-index --no-deps --no-build-isolation -e . > /dev/null 2>&1
python3 setup.py build_ext --inplace > /dev/null 2>&1
{ md5sum gpuwatch/trace/schema.py gpuwatch/analysis/pipeline.py gpuwatch/cli/reports.py bindings/sim/__init__.py; nvidia-smi --query-gpu=name,driver_version --format=csv,noheader; python3 -c "import pyarrow; print('pyarrow', pyarrow.__version__)"; } > "$R/tree.txt" 2>&1
cd "$R"
python3 -m gpuwatch record --gap 0,20 --iters 300 -q -o run.parquet > record.txt 2>&1; echo "rc=$?" >> record.txt
python3 -m gpuwatch analyze run.parquet --html report.html > analyze.txt 2>&1; echo "rc=$?" >> analyze.txt
python3 -m gpuwatch analyze run.parquet --html report.html -q > analyze_again.txt 2>&1; echo "rc=$?" >> analyze_again.txt
python3 - > damaged.txt 2>&1 <<'PY'
import shutil, subprocess, sys
import pyarrow.parquet as pq
md = pq.ParquetFile("run.parquet").metadata
rg = md.row_group(0)
c = next(rg.column(i) for i in range(rg.num_columns) if rg.column(i).path_in_schema == "gpu_ms")
shutil.copy("run.parquet", "damaged.parquet")
with open("damaged.parquet", "r+b") as f:
    at = c.data_page_offset + c.total_compressed_size // 2
    f.seek(at); b = f.read(8); f.seek(at); f.write(bytes(x ^ 0x5A for x in b))
r = subprocess.run([sys.executable, "-m", "gpuwatch", "analyze", "damaged.parquet", "-q"],
                   capture_output=True, text=True)
print("rc", r.returncode); print(r.stdout + r.stderr)
PY
rm -f damaged.parquet
cd - > /dev/null
# the GPU tests (TESTS=gpu, when device time is short), else the README's command as written
if [ "${TESTS:-readme}" = gpu ]; then
  timeout 300 python3 -m pytest -p no:cacheprovider -rfs -n 4 -m "gpu and not serial" > "$R/gpu_tests.txt" 2>&1; echo "rc=$?" >> "$R/gpu_tests.txt"
else
  timeout 420 bash -c 'python3 -m pytest -p no:cacheprovider -rfs -n auto --dist worksteal -m "not serial" > "$0/parallel.txt" 2>&1; echo "rc=$?" >> "$0/parallel.txt"; python3 -m pytest -p no:cacheprovider -rfs -n auto --dist loadfile -m serial > "$0/serial.txt" 2>&1; echo "rc=$?" >> "$0/serial.txt"' "$R"
fi
tail -2 "$R/record.txt"; tail -3 "$R/analyze.txt"; tail -2 "$R/analyze_again.txt"; cat "$R/damaged.txt"
tail -4 "$R"/parallel.txt "$R"/serial.txt "$R"/gpu_tests.txt 2>/dev/null || true  # (the files of one mode)
