#!/usr/bin/env bash
# Issue 15 on the lent H100: record each real cause on purpose, then analyse it.
#   OUT=/some/dir bash benchmarks/device/h100_issue15.sh          # all cases (about 3 minutes)
#   OUT=/some/dir CASES="steady power_cap" bash benchmarks/device/h100_issue15.sh
# Each case writes $OUT/causes/CASE.parquet, CASE.record.txt (record's output), CASE.cause.txt
# (when the cause started and stopped, epoch ns), CASE.analyze.txt and CASE.json.
# The idle ramp must run first, on a GPU no process has used for a while.
set -uo pipefail
R="$OUT/causes"; mkdir -p "$R"
export PYTHONUNBUFFERED=1
[ -n "${NO_INSTALL:-}" ] || python3 -m pip install -q --no-index --no-deps --no-build-isolation -e . >/dev/null 2>&1 || exit 1
CASES="${CASES:-idle_ramp steady cotenant_gemm cotenant_copy busy_host busy_host_gap2 power_cap}"
# the in-band clock probe on (PROBE="--no-probe" to leave it off; the first recording, 2026-11-26
# call 1, had it off)
REC="${REC:-python3 -m gpuwatch.record} --sample-hz 200 ${PROBE:---probe}"
smi() { nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.max.sm,pstate,power.draw,power.limit,temperature.gpu \
          --format=csv >> "$R/nvidia_smi.csv" 2>&1; }
smi
nproc > "$R/nproc.txt"

# record CASE ARGS... while `cause` (if set) runs beside it; the cause is stopped when record ends
run_case() {
  local name="$1"; shift
  local cpid=""
  if [ -n "${cause:-}" ]; then
    python3 benchmarks/causes.py $cause > "$R/$name.cause.txt" 2>&1 & cpid=$!
  fi
  $REC "$@" --out "$R/$name.parquet" > "$R/$name.record.txt" 2>&1
  echo "record exit $?" >> "$R/$name.record.txt"
  if [ -n "$cpid" ]; then kill -TERM "$cpid" 2>/dev/null; wait "$cpid"; fi
  if python3 -c "import ruptures" 2>/dev/null; then  # (not on the lent GPU machine: analyse here)
    python3 -m gpuwatch.analyze "$R/$name.parquet" > "$R/$name.analyze.txt" 2>&1
    python3 -m gpuwatch.analyze "$R/$name.parquet" --json > "$R/$name.json" 2>&1
  fi
  smi
  echo "== $name"; tail -n 3 "$R/$name.record.txt"
}

for c in $CASES; do
  cause=""
  case "$c" in
  idle_ramp)      # a fresh process on an idle GPU: the clock ramps from idle before the first inference
    run_case idle_ramp --gap 20 --iters 300 --warmup 0 ;;
  steady)         # nothing happens: back-to-back and 20 ms gaps
    run_case steady --gap 0,20 --iters 400 ;;
  cotenant_gemm)  # a second process looping fp16 GEMMs arrives ~4 s in and stays
    cause="gemm --delay 4 --seconds 60" run_case cotenant_gemm --gap 5 --iters 1000 ;;
  cotenant_went)  # a GEMM co-tenant for 2.5 s from ~4.3 s, then gone: the process list (~1 Hz)
                  # still lists it at the reading before the calls of the second after it went
    cause="gemm --delay 4.3 --seconds 2.5" run_case cotenant_went --gap 5 --iters 1500 ;;
  cotenant_copy)  # a second process looping 1 GiB device-to-device copies arrives ~4 s in
    cause="copy --delay 4 --seconds 60" run_case cotenant_copy --gap 5 --iters 1000 ;;
  busy_host)      # 40 busy-looping processes on the 16 cores for 3 s in the middle of a
                  # back-to-back, launch-bound conv net (inferences run from ~4.5 s to ~11 s)
    cause="cpu --procs 40 --delay 6 --seconds 3" \
      run_case busy_host --torch gpuwatch.bindings.torch:convnet --gap 0 --iters 8000 ;;
  busy_host_gap2) # the same with 2 ms gaps (the thread sleeps between inferences), 4 s of 40 procs
    cause="cpu --procs 40 --delay 7 --seconds 4" \
      run_case busy_host_gap2 --torch gpuwatch.bindings.torch:convnet --gap 2 --iters 4000 ;;
  power_cap)      # four chained 8192^2 fp16 GEMMs per inference, back-to-back then with 20 ms gaps
    run_case power_cap --torch gpuwatch.bindings.torch:gemm,count=4 --gap 0,20 --iters 1000 ;;
  *) echo "unknown case $c"; exit 2 ;;
  esac
done
python3 benchmarks/trace_facts.py "$R"/*.parquet > "$R/trace_facts.txt" 2>&1
ls -la "$R" > "$R/files.txt"
tar czf "$OUT/causes.tgz" -C "$OUT" causes
