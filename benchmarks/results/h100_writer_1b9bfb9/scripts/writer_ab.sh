#!/usr/bin/env bash
# 1b9bfb9 on the lent GPU: GPU tests; issue 27's sched_flags (spin), recorded with the trace
# writer before (8a65c16's writer.py) and after 1b9bfb9, alternating, each analysed: the
# interpreter-lock episodes found from their signal, and the busiest thread named.
# (scratch/writer_old.py: `git show 8a65c16:gpuwatch/trace/writer.py`; the tree itself is 1b9bfb9.)
set -uo pipefail
export PYTHONUNBUFFERED=1
R="$OUT/writer_1b9bfb9"; mkdir -p "$R"
python3 -m pip install -q --no-index --no-deps --no-build-isolation -e . >/dev/null 2>&1 || { echo "install failed"; exit 1; }
python3 setup.py build_ext --inplace > /dev/null 2>&1 || echo "build failed"
cp gpuwatch/trace/writer.py /tmp/writer_new.py
timeout 200 python3 -m pytest -q -p no:cacheprovider tests/test_gpu.py tests/test_gpu_user_code.py tests/test_gpu_run.py tests/test_trace.py > "$R/gpu_tests.txt" 2>&1
echo "== gpu tests ($SECONDS s)"; tail -2 "$R/gpu_tests.txt"
for run in old_1 new_2 old_3 new_4; do
  v=${run%_*}; if [ "$v" = old ]; then cp scratch/writer_old.py gpuwatch/trace/writer.py; else cp /tmp/writer_new.py gpuwatch/trace/writer.py; fi
  timeout 60 python3 benchmarks/issue27/sched_flags.py --out "/tmp/$run.parquet" --sched spin --gaps 0,5 --seconds-per 3 > "$R/$run.txt" 2>&1
  cp /tmp/writer_new.py gpuwatch/trace/writer.py
  python3 - "/tmp/$run.parquet" >> "$R/$run.txt" 2>&1 <<'PY'
import sys, warnings
warnings.simplefilter("ignore")
import gpuwatch
a = gpuwatch.analyze(sys.argv[1])
w = a.wall_verdicts
lock = w[w.get("found_from", w["cause"]).astype(str).eq("interpreter_lock") | w["cause"].astype(str).eq("interpreter_lock")]
lat = a.latency[a.latency["group"] == "condition"][["condition", "wall_ms", "wall_p50_ms"]]
print("conditions:", lat.round(3).to_dict("records"))
print("lock verdicts:", len(lock), "writer named:", int(lock["sentence"].str.contains("gpuwatch-writer").sum()))
for s in lock["sentence"]:
    print(" -", s[:400])
PY
  echo "== $run ($SECONDS s)"; tail -6 "$R/$run.txt" | cut -c1-300
done
tar czf "$OUT/writer_1b9bfb9.tgz" -C "$OUT" writer_1b9bfb9
