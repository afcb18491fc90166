#!/usr/bin/env bash
# Does calls' gap-0 wall ratio (1.024 in run_hooks_7424438) repeat? calls, aa (control), calls.
set -uo pipefail
export PYTHONUNBUFFERED=1
R="$OUT/calls_repeat_7424438"; mkdir -p "$R"
python3 -m pip install -q --no-index --no-deps --no-build-isolation -e . >/dev/null 2>&1 || { echo "install failed"; exit 1; }
python3 setup.py build_ext --inplace > /dev/null 2>&1 || echo "build failed"
for run in calls_1 aa_2 calls_3; do
  mode=${run%_*}; d="$R/$run"; mkdir -p "$d"
  timeout 150 python3 -m gpuwatch run -q -o "$d/run.parquet" benchmarks/run_overhead.py "$d" 150 "$mode" 20 2> "$d/run_stderr.txt"
  python3 benchmarks/run_overhead.py --summarise "$d" > "$d/summary.json" 2>&1
  rm -f "$d/run.parquet" "$d/blocks.json"
  echo "== $run ($SECONDS s)"; python3 -c "import json,sys; d=json.load(open(sys.argv[1])); [print(k, v) for k,v in d.items() if 'gap 0 ms' in k and 'ratio' in k]" "$d/summary.json" 2>&1 | head -4
done
tar czf "$OUT/calls_repeat_7424438.tgz" -C "$OUT" calls_repeat_7424438
