#!/usr/bin/env bash
# Is calls mode's gap-0 overhead (~1.01 gpu_ms on this machine) the in-band clock's stamps
# (on by default since 89ae842)? This tree against the same tree with the timer's probe off
# (a diagnostic copy: recorder.py's RegionTimer(probe=...) set False), interleaved.
set -uo pipefail
export PYTHONUNBUFFERED=1
R="$OUT/calls_probe_ab"; mkdir -p "$R"
python3 -m pip uninstall -y gpuwatch-latency > /dev/null 2>&1
python3 setup.py build_ext --inplace > /dev/null 2>&1 || echo "build failed"
for v in on off; do
  rm -rf /tmp/lay_$v; mkdir -p /tmp/lay_$v; cp -r gpuwatch /tmp/lay_$v/gpuwatch; rm -rf /tmp/lay_$v/gpuwatch/bindings; cp -r bindings /tmp/lay_$v/gpuwatch/bindings
done
sed -i 's/probe=bool(self.probe),/probe=False,/' /tmp/lay_off/gpuwatch/recorder.py
grep -c "probe=False," /tmp/lay_off/gpuwatch/recorder.py
HERE=$PWD; i=0
for v in on off on off on off; do
  i=$((i+1)); d="$R/${i}_$v"; mkdir -p "$d"
  (cd /tmp && export PYTHONPATH=/tmp/lay_$v && timeout 150 python3 -m gpuwatch run -q -o "$d/run.parquet" "$HERE/benchmarks/run_overhead.py" "$d" 150 calls 10 2> "$d/run_stderr.txt"
   python3 "$HERE/benchmarks/run_overhead.py" --summarise "$d" > "$d/summary.json" 2>&1
   python3 -c "import gpuwatch, sys; t = gpuwatch.load(sys.argv[1]); i = t.inferences; print('stamped', int(i['sm_clock_inband_mhz'].notna().sum()) if 'sm_clock_inband_mhz' in i else 'no column', 'of', len(i))" "$d/run.parquet" > "$d/stamped.txt" 2>&1)
  rm -f "$d/run.parquet" "$d/blocks.json"
  echo "== $i probe $v ($SECONDS s) $(cat $d/stamped.txt)"; python3 -c "import json,sys; d=json.load(open(sys.argv[1])); [print(k, v['p50'], v['iqr'], v['p50_ci95']) for k,v in d.items() if 'gap 0 ms' in k and 'ratio' in k]" "$d/summary.json" 2>&1 | head -4
done
tar czf "$OUT/calls_probe_ab.tgz" -C "$OUT" calls_probe_ab
