#!/usr/bin/env bash
# A/B on one machine: calls mode at gap 0, c2b5039's region files (old) against 7424438's (new),
# alternating runs, the extension rebuilt for each.
set -uo pipefail
export PYTHONUNBUFFERED=1
R="$OUT/calls_ab_c2b5039_7424438"; mkdir -p "$R"
python3 -m pip install -q --no-index --no-deps --no-build-isolation -e . >/dev/null 2>&1 || { echo "install failed"; exit 1; }
use() {
  for f in gpuwatch/autoregions.py gpuwatch/gapregions.py gpuwatch/region.py bindings/_autoregions.c; do cp "scratch/$1/$f" "$f"; done
  python3 setup.py build_ext --inplace > /dev/null 2>&1 || echo "build failed"
}
for run in old_1 new_2 old_3 new_4 old_5 new_6; do
  use "${run%_*}"; d="$R/$run"; mkdir -p "$d"
  timeout 150 python3 -m gpuwatch run -q -o "$d/run.parquet" benchmarks/run_overhead.py "$d" 150 calls 10 2> "$d/run_stderr.txt"
  python3 benchmarks/run_overhead.py --summarise "$d" > "$d/summary.json" 2>&1
  rm -f "$d/run.parquet" "$d/blocks.json"
  echo "== $run ($SECONDS s)"; python3 -c "import json,sys; d=json.load(open(sys.argv[1])); [print(k, v) for k,v in d.items() if 'gap 0 ms' in k and 'ratio' in k]" "$d/summary.json" 2>&1 | head -4
done
use new
tar czf "$OUT/calls_ab.tgz" -C "$OUT" calls_ab_c2b5039_7424438
