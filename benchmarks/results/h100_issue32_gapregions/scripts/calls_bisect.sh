#!/usr/bin/env bash
# Bisect calls mode's gap-0 overhead between 44bf851 (~1.003 gpu_ms) and c2b5039 (~1.011):
# four commits laid out as installed, runs interleaved A B C D D C B A on one machine.
set -uo pipefail
export PYTHONUNBUFFERED=1
R="$OUT/calls_bisect"; mkdir -p "$R"
python3 -m pip uninstall -y gpuwatch-latency > /dev/null 2>&1
for c in 44bf851 89ae842 81bfd14 c2b5039; do
  [ -d /tmp/w_$c ] || git worktree add -f /tmp/w_$c $c > /dev/null 2>&1 || { echo "worktree $c failed"; exit 1; }
  (cd /tmp/w_$c && python3 setup.py build_ext --inplace > /dev/null 2>&1) || echo "build failed $c"
  rm -rf /tmp/lay_$c; mkdir -p /tmp/lay_$c; cp -r /tmp/w_$c/gpuwatch /tmp/lay_$c/gpuwatch; rm -rf /tmp/lay_$c/gpuwatch/bindings; cp -r /tmp/w_$c/bindings /tmp/lay_$c/gpuwatch/bindings
done
echo "built ($SECONDS s)"
i=0
for c in 44bf851 89ae842 81bfd14 c2b5039 c2b5039 81bfd14 89ae842 44bf851; do
  i=$((i+1)); d="$R/${i}_$c"; mkdir -p "$d"
  (cd /tmp && export PYTHONPATH=/tmp/lay_$c && timeout 150 python3 -m gpuwatch run -q -o "$d/run.parquet" "/tmp/w_$c/benchmarks/run_overhead.py" "$d" 150 calls 10 2> "$d/run_stderr.txt"
   python3 "/tmp/w_$c/benchmarks/run_overhead.py" --summarise "$d" > "$d/summary.json" 2>&1
   python3 -c "import gpuwatch.bindings as b, os; print(os.path.dirname(b.__file__), [f for f in os.listdir(os.path.dirname(b.__file__)) if f.endswith('.so')])" > "$d/which.txt" 2>&1)
  rm -f "$d/run.parquet" "$d/blocks.json"
  echo "== $i $c ($SECONDS s) $(cat $d/which.txt)"; python3 -c "import json,sys; d=json.load(open(sys.argv[1])); [print(k, v['p50'], v['p50_ci95']) for k,v in d.items() if 'gap 0 ms' in k and 'ratio' in k]" "$d/summary.json" 2>&1 | head -4
done
tar czf "$OUT/calls_bisect.tgz" -C "$OUT" calls_bisect
