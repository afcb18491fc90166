#!/usr/bin/env bash
# calls mode at gap 0: 44bf851 (the 2026-11-26 final2 code, calls 1.005 gpu_ms there) against
# this tree (7424438), alternating runs on one machine; each tree laid out as installed
# (gpuwatch/ with bindings/ inside, the extension built) and put first on PYTHONPATH.
set -uo pipefail
export PYTHONUNBUFFERED=1
R="$OUT/calls_ab_44bf851_7424438"; mkdir -p "$R"
HERE=$PWD
python3 -m pip uninstall -y gpuwatch-latency > /dev/null 2>&1
[ -d /tmp/old44 ] || git worktree add -f /tmp/old44 44bf851 > /dev/null 2>&1 || { echo "worktree failed"; exit 1; }
rm -rf /tmp/lay_old /tmp/lay_new
lay() {  # lay SRC DST
  (cd "$1" && python3 setup.py build_ext --inplace > /dev/null 2>&1) || echo "build failed in $1"
  mkdir -p "$2"; cp -r "$1/gpuwatch" "$2/gpuwatch"; rm -rf "$2/gpuwatch/bindings"; cp -r "$1/bindings" "$2/gpuwatch/bindings"
}
lay /tmp/old44 /tmp/lay_old; lay "$HERE" /tmp/lay_new
for run in old_1 new_2 old_3 new_4 old_5 new_6; do
  v=${run%_*}; tree=$HERE; [ "$v" = old ] && tree=/tmp/old44
  d="$R/$run"; mkdir -p "$d"
  (cd /tmp && export PYTHONPATH=/tmp/lay_$v && timeout 150 python3 -m gpuwatch run -q -o "$d/run.parquet" "$tree/benchmarks/run_overhead.py" "$d" 150 calls 10 2> "$d/run_stderr.txt"
   python3 "$tree/benchmarks/run_overhead.py" --summarise "$d" > "$d/summary.json" 2>&1
   python3 -c "import gpuwatch; print(gpuwatch.__file__)" > "$d/which.txt"
   python3 -c "import gpuwatch.bindings as b; print(b.__file__)" >> "$d/which.txt")
  rm -f "$d/run.parquet" "$d/blocks.json"
  echo "== $run ($SECONDS s) $(cat $d/which.txt | tr "\n" " ")"; python3 -c "import json,sys; d=json.load(open(sys.argv[1])); [print(k, v) for k,v in d.items() if 'gap 0 ms' in k and 'ratio' in k]" "$d/summary.json" 2>&1 | head -4
done
tar czf "$OUT/calls_ab44.tgz" -C "$OUT" calls_ab_44bf851_7424438
