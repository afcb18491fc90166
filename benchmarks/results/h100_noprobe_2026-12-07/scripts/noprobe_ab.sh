#!/usr/bin/env bash
# gpuwatch run --no-probe on the GPU (72ad56e, not run there before): no stamps, the trace's
# options say so; and what the in-band clock's stamps cost calls mode at gap 0: default and
# --no-probe alternating, the same tree, each run A/B against a bare torch-event loop.
set -uo pipefail
export PYTHONUNBUFFERED=1
R="$OUT/noprobe_ab"; mkdir -p "$R"
python3 -m pip install -q --no-index --no-deps --no-build-isolation -e . >/dev/null 2>&1 || { echo "install failed"; exit 1; }
python3 setup.py build_ext --inplace > /dev/null 2>&1 || echo "build failed"
nvidia-smi --query-gpu=name,driver_version,clocks.sm,power.draw,temperature.gpu --format=csv > "$R/gpu.txt" 2>&1
git log -1 --format=%H > "$R/commit.txt" 2>&1
i=0
for v in default noprobe default noprobe default noprobe; do
  i=$((i+1)); d="$R/${i}_$v"; mkdir -p "$d"
  flag=""; [ "$v" = noprobe ] && flag="--no-probe"
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
echo "== GPU tests ($SECONDS s)"
timeout 200 python3 -m pytest -q -p no:cacheprovider -x tests/test_gpu_user_code.py tests/test_gpu_run.py tests/test_analysis_status.py > "$R/gpu_tests.txt" 2>&1; echo "rc=$?" >> "$R/gpu_tests.txt"
tail -5 "$R/gpu_tests.txt"
tar czf "$OUT/noprobe_ab.tgz" -C "$OUT" noprobe_ab
