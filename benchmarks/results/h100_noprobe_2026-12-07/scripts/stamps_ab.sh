#!/usr/bin/env bash
# What the in-band clock's stamps cost calls mode at gap 0: gpuwatch run's default stamps and
# another arm (gpuwatch run options FLAGS, labelled ARM) alternating, 3 runs each, the same tree,
# each run A/B against a bare torch-event loop; the trace's stamps and options per run. GPU_TESTS=1
# then runs the user-code, run and status GPU tests.
#   NAME=noprobe_ab ARM=noprobe FLAGS=--no-probe GPU_TESTS=1 bash stamps_ab.sh
#   NAME=probe_every_ab ARM=every20 FLAGS="--probe-every 20" bash stamps_ab.sh
set -uo pipefail
export PYTHONUNBUFFERED=1
R="$OUT/$NAME"; mkdir -p "$R"
python3 -m pip install -q --no-index --no-deps --no-build-isolation -e . >/dev/null 2>&1 || { echo "install failed"; exit 1; }
python3 setup.py build_ext --inplace > /dev/null 2>&1 || echo "build failed"
nvidia-smi --query-gpu=name,driver_version,clocks.sm,power.draw,temperature.gpu --format=csv > "$R/gpu.txt" 2>&1
git log -1 --format=%H > "$R/commit.txt" 2>&1
i=0
for v in default "$ARM" default "$ARM" default "$ARM"; do
  i=$((i+1)); d="$R/${i}_$v"; mkdir -p "$d"
  flag=""; [ "$v" = "$ARM" ] && flag="$FLAGS"
  timeout 150 python3 -m gpuwatch run -q $flag -o "$d/run.parquet" benchmarks/run_overhead.py "$d" 300 calls 10 2> "$d/run_stderr.txt"
  python3 benchmarks/run_overhead.py --summarise "$d" > "$d/summary.json" 2>&1
  python3 - "$d/run.parquet" > "$d/stamped.txt" 2>&1 <<'PY'
import sys, gpuwatch
t = gpuwatch.load(sys.argv[1])
i = t.inferences
print("stamped", int(i["sm_clock_inband_mhz"].notna().sum()) if "sm_clock_inband_mhz" in i else "no column", "of", len(i),
      "| options.probe:", (t.meta.get("options") or {}).get("probe"), "| probe_every:", (t.meta.get("options") or {}).get("probe_every_ms"), "| probe_error:", (t.meta.get("options") or {}).get("probe_error"))
PY
  rm -f "$d/run.parquet" "$d/blocks.json"
  echo "== $i $v ($SECONDS s) $(cat $d/stamped.txt)"; python3 -c "import json,sys; d=json.load(open(sys.argv[1])); [print(k, v['p50'], v['iqr'], v['p50_ci95']) for k,v in d.items() if 'gap 0 ms' in k and 'ratio' in k]" "$d/summary.json" 2>&1 | head -4
done
if [ "${GPU_TESTS:-0}" = 1 ]; then
echo "== GPU tests ($SECONDS s)"
timeout 200 python3 -m pytest -q -p no:cacheprovider -x tests/test_gpu_user_code.py tests/test_gpu_run.py tests/test_analysis_status.py > "$R/gpu_tests.txt" 2>&1; echo "rc=$?" >> "$R/gpu_tests.txt"
tail -5 "$R/gpu_tests.txt"
fi
tar czf "$OUT/$NAME.tgz" -C "$OUT" "$NAME"
