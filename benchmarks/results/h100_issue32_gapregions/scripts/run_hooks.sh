#!/usr/bin/env bash
# gpuwatch run's hooks after 7424438 (GapRegions owns its regions) on the lent GPU:
# GPU tests, the hooks' host cost (C, Python), gpuwatch run's overhead against a bare loop.
set -uo pipefail
export PYTHONUNBUFFERED=1
R="$OUT/run_hooks_7424438"; mkdir -p "$R"
python3 -m pip install -q --no-index --no-deps --no-build-isolation -e . >/dev/null 2>&1 || { echo "install failed"; exit 1; }
python3 setup.py build_ext --inplace > "$R/build.txt" 2>&1 || echo "build failed"
{ date -u; nproc; git log -1 --format='%H %s' | cut -c1-100; nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.max.sm,pstate,power.draw,temperature.gpu --format=csv; python3 -c "import torch; print('torch', torch.__version__)"; } > "$R/env.txt" 2>&1
cat "$R/env.txt"
timeout 240 python3 -X faulthandler -m pytest -q -ra -p no:cacheprovider tests/test_gpu_run.py tests/test_autoregions.py \
    tests/test_native.py tests/test_region.py tests/test_gpu_user_code.py tests/test_gpu.py > "$R/gpu_tests.txt" 2>&1
echo "== gpu tests ($SECONDS s)"; grep -E "passed|failed|FAILED|SKIPPED" "$R/gpu_tests.txt" | tail -12
timeout 60 python3 benchmarks/run_host_cost.py --n 200 --json "$R/host_cost_c.json" > "$R/host_cost_c.txt" 2>&1
timeout 60 python3 benchmarks/run_host_cost.py --n 200 --python --json "$R/host_cost_python.json" > "$R/host_cost_python.txt" 2>&1
echo "== host cost ($SECONDS s)"; cat "$R/host_cost_c.txt"; tail -5 "$R/host_cost_python.txt"
for mode in nvtx calls; do
  d="$R/ovh_$mode"; mkdir -p "$d"; opt=()
  [ "$mode" = nvtx ] && opt=(--regions nvtx)
  timeout 150 python3 -m gpuwatch run -q "${opt[@]}" -o "$d/run.parquet" benchmarks/run_overhead.py "$d" ${PAIRS:-100} "$mode" ${GAP_PAIRS:-100} 2> "$d/run_stderr.txt"
  python3 benchmarks/run_overhead.py --summarise "$d" > "$d/summary.json" 2>&1
  python3 -c "import gpuwatch, json; t = gpuwatch.load('$d/run.parquet'); print(json.dumps({k: t.meta.get(k) for k in ('regions',)}, default=str)); print(t.inferences['name'].value_counts().head(3).to_dict())" > "$d/meta.json" 2>&1
  rm -f "$d/run.parquet"
  echo "== $mode ($SECONDS s)"; python3 -c "import json,sys; d=json.load(open(sys.argv[1])); [print(k, {kk: (round(vv,4) if isinstance(vv,float) else vv) for kk,vv in v.items()} if isinstance(v,dict) else v) for k,v in d.items() if 'ratio' in k]" "$d/summary.json" 2>&1 | head -12
done
tar czf "$OUT/run_hooks_7424438.tgz" -C "$OUT" run_hooks_7424438
echo "total $SECONDS s"
