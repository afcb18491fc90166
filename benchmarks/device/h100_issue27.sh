#!/usr/bin/env bash
# Issue 27 on the lent H100: real causes made on purpose, each recorded by a user's own program
# (benchmarks/issue27/, see its README.md) with the cause present for a known window.
#   OUT=/some/dir bash benchmarks/device/h100_issue27.sh                  # all cases (about 4 minutes)
#   OUT=/some/dir CASES="cotenant_light sync_spin" bash benchmarks/device/h100_issue27.sh
#   OUT=/tmp/x DRY=1 bash benchmarks/device/h100_issue27.sh               # no GPU, no torch: a dry run
#                          # (gpuwatch's stand-in device and benchmarks/issue27/standin's torch)
# Each case writes $OUT/issue27/CASE.parquet, CASE.stdout.txt (the program's or record's output),
# CASE.cause.txt (the cause's true window: `cause KIND start_ns=... end_ns=...`, epoch ns, from
# causes.py or the program itself) and, where the program keeps one, CASE.latency.csv (the
# user's own call -> result per request) and CASE.gc.csv (every garbage collection). At the end
# truth.txt (latency before/during/after each window), trace_facts.txt, and everything in ONE
# archive, $OUT/issue27.tar.gz. Never changes clocks, power or modes.
set -uo pipefail
: "${OUT:?set OUT=/some/dir}"
R="$OUT/issue27"; mkdir -p "$R"
export PYTHONUNBUFFERED=1
P=benchmarks/issue27
PY="${PY:-python3}"
BUDGET_S="${BUDGET_S:-420}"  # no new case starts after this many seconds (the archive must be written)
PROCS="${PROCS:-40}"
REC_ENGINE=(--torch gpuwatch.bindings.torch:convnet)
if [ -n "${DRY:-}" ]; then
  export GPUWATCH_DEVICE=standin PYTHONPATH="$PWD/$P/standin${PYTHONPATH:+:$PYTHONPATH}"
  NO_INSTALL=1; PROCS="${DRY_PROCS:-4}"
  REC_ENGINE=(--device sim:t4 --engine builtin:small)  # (the stand-in runs no engines)
fi
[ -n "${NO_INSTALL:-}" ] || $PY -m pip install -q --no-index --no-deps --no-build-isolation -e . >/dev/null 2>&1 || { echo "install failed"; exit 1; }
CASES="${CASES:-cotenant_light cotenant_light_gap0 cotenant_light_run python_thread python_thread_duty gc_preprocess busy_host sync_spin sync_blocking sync_switch}"
HZ=200
smi() { nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.max.sm,pstate,power.draw,power.limit,temperature.gpu \
          --format=csv >> "$R/nvidia_smi.csv" 2>&1; }
{ date -u; nproc; $PY -c 'import sys, platform; print(sys.version); print(platform.platform())'
  $PY -c 'import torch; print("torch", torch.__version__, torch.version.cuda)' 2>&1 | tail -1
  git log -1 --format='%H %s' 2>/dev/null; git status --short 2>/dev/null | head -40; } > "$R/env.txt"
smi

PPID_=""; CPID=""
# start NAME LIMIT_S CMD...: the program in the background, its output in CASE.stdout.txt
start() {
  local name="$1" limit="$2"; shift 2
  rm -rf "$R/$name.parquet" "$R/$name.parquet.partial" "$R/$name.go"
  echo "# $*" > "$R/$name.stdout.txt"
  timeout -s TERM -k 10 "$limit" "$@" >> "$R/$name.stdout.txt" 2>&1 & PPID_=$!
}
# cause NAME ARGS...: causes.py in the background, told to start --delay after NAME.go exists
cause() {
  local name="$1"; shift
  $PY benchmarks/causes.py "$@" --go-file "$R/$name.go" >> "$R/$name.cause.txt" 2>&1 & CPID=$!
}
# go_when NAME TEST...: wait (up to 120 s, while the program runs) until TEST holds; then NAME.go
go_when() {
  local name="$1"; shift
  local t=0
  until "$@"; do
    kill -0 "$PPID_" 2>/dev/null || { echo "  $name: program ended before it was ready"; return 1; }
    sleep 0.05; t=$((t + 1)); [ $t -lt 2400 ] || { echo "  $name: not ready in 120 s"; return 1; }
  done
  touch "$R/$name.go"
}
serving() { grep -q '^serving' "$R/$1.stdout.txt"; }
recording() { compgen -G "$R/$1.parquet.partial/*-inferences.parquet" > /dev/null; }
# finish NAME: wait for the program, stop the cause, collect the in-process causes' lines
finish() {
  local name="$1"
  wait "$PPID_"; echo "exit $?" >> "$R/$name.stdout.txt"
  if [ -n "$CPID" ]; then kill -TERM "$CPID" 2>/dev/null; wait "$CPID" 2>/dev/null; CPID=""; fi
  grep -E '^(cause |serving|stopped|primary context)' "$R/$name.stdout.txt" >> "$R/$name.cause.txt"
  rm -f "$R/$name.go"
  if $PY -c "import ruptures" 2>/dev/null; then  # (not on the lent GPU machine: analyse here)
    $PY -m gpuwatch.analyze "$R/$name.parquet" > "$R/$name.analyze.txt" 2>&1
  fi
  smi
  echo "== $name ($SECONDS s)"; grep -E '^(cause |requests=)' "$R/$name.stdout.txt" | cut -c1-200; tail -n 1 "$R/$name.stdout.txt"
}

for c in $CASES; do
  if [ "$SECONDS" -gt "$BUDGET_S" ]; then echo "skipped $c: $SECONDS s used" | tee -a "$R/skipped.txt"; continue; fi
  : > "$R/$c.cause.txt"; CPID=""
  lat=(--latency-log "$R/$c.latency.csv")
  case "$c" in
  cotenant_light)      # host-bound MLP (30 x 256 fp16, batch 1), 1 ms pauses, s.infer; a light
                       # co-tenant (small MLP served with 1 ms pauses) from 6 s to 16 s of 25
    start "$c" 90 $PY $P/mlp_service.py --out "$R/$c.parquet" --seconds 25 --gap-ms 1 --sample-hz $HZ "${lat[@]}"
    cause "$c" light --delay 6 --seconds 10 --sleep-ms 1
    go_when "$c" serving "$c"; finish "$c" ;;
  cotenant_light_gap0) # the same service, wider (20 x 512) and back to back; the co-tenant from
                       # 5 s to 13 s of 20
    start "$c" 90 $PY $P/mlp_service.py --out "$R/$c.parquet" --seconds 20 --gap-ms 0 --layers 20 --width 512 --sample-hz $HZ "${lat[@]}"
    cause "$c" light --delay 5 --seconds 8 --sleep-ms 1
    go_when "$c" serving "$c"; finish "$c" ;;
  cotenant_light_run)  # an unmodified program under `gpuwatch run` (NVTX "request" ranges with
                       # .cpu() inside), 5 ms pauses; a co-tenant pausing 2 ms, from 5 s to 13 s of 20
    start "$c" 90 $PY -m gpuwatch run -q --sample-hz $HZ -o "$R/$c.parquet" $P/mlp_app.py --seconds 20 --gap-ms 5 "${lat[@]}"
    cause "$c" light --delay 5 --seconds 8 --sleep-ms 2
    go_when "$c" serving "$c"; finish "$c" ;;
  python_thread)       # conv net, each request a span; a "logger" thread json.dumps-ing a
                       # 5000-key dict back to back from 5 s to 11 s of 16
    start "$c" 90 $PY $P/convnet_logger.py --out "$R/$c.parquet" --seconds 16 --logger-at 5 --logger-seconds 6 --sample-hz $HZ "${lat[@]}"
    finish "$c" ;;
  python_thread_duty)  # the same timed by s.infer; a lighter logger (500 keys, 5 ms sleeps)
                       # from 4 s to 10 s of 14
    start "$c" 90 $PY $P/convnet_logger.py --out "$R/$c.parquet" --timing infer --seconds 14 --logger-at 4 --logger-seconds 6 --logger-keys 500 --logger-sleep-ms 5 --sample-hz $HZ "${lat[@]}"
    finish "$c" ;;
  gc_preprocess)       # preprocess span + s.infer(.cpu()); reference cycles from 6 s to 14 s of 20
    start "$c" 90 $PY $P/gc_preprocess.py --out "$R/$c.parquet" --seconds 20 --cycles-at 6 --cycles-seconds 8 --gc-log "$R/$c.gc.csv" --sample-hz $HZ "${lat[@]}"
    finish "$c" ;;
  busy_host)           # record --torch conv net back to back; $PROCS busy-looping processes for
                       # 6 s, from 5 s after the first inferences reached the trace (20,000 at ~0.8 ms)
    start "$c" 120 $PY -m gpuwatch.record "${REC_ENGINE[@]}" --gap 0 --iters 20000 --sample-hz $HZ --out "$R/$c.parquet"
    cause "$c" cpu --procs "$PROCS" --delay 5 --seconds 6
    go_when "$c" recording "$c"; finish "$c" ;;
  sync_spin)           # gpuwatch's torch engine (conv net 1280x720 as one CUDA graph) +
                       # engine.synchronize(); the context set to spin; gaps 0 and 5 ms, 3 s each
    start "$c" 90 $PY $P/sched_flags.py --out "$R/$c.parquet" --sched spin --sample-hz $HZ "${lat[@]}"
    finish "$c" ;;
  sync_blocking)       # the same with the context set to blocking sync
    start "$c" 90 $PY $P/sched_flags.py --out "$R/$c.parquet" --sched blocking --sample-hz $HZ "${lat[@]}"
    finish "$c" ;;
  sync_switch)         # one process, one trace: spin and blocking (cuCtxSetFlags) as conditions
    start "$c" 90 $PY $P/sched_flags.py --out "$R/$c.parquet" --sched switch --seconds-per 3 --sample-hz $HZ "${lat[@]}"
    finish "$c" ;;
  # variations (a second call, 2026-12-06): other intensities, gaps and timing paths
  cotenant_heavier)    # the light service on 2 ms gaps; a co-tenant pausing only 0.2 ms, 5-13 s of 20
    start "$c" 90 $PY $P/mlp_service.py --out "$R/$c.parquet" --seconds 20 --gap-ms 2 --sample-hz $HZ "${lat[@]}"
    cause "$c" light --delay 5 --seconds 8 --sleep-ms 0.2
    go_when "$c" serving "$c"; finish "$c" ;;
  python_thread_2000)  # s.infer timing; a logger of 2000-key dumps with 1 ms sleeps, 4-9 s of 14
    start "$c" 90 $PY $P/convnet_logger.py --out "$R/$c.parquet" --timing infer --seconds 14 --logger-at 4 --logger-seconds 5 --logger-keys 2000 --logger-sleep-ms 1 --sample-hz $HZ "${lat[@]}"
    finish "$c" ;;
  busy_host_gap2)      # record with 2 ms gaps (the thread sleeps between inferences); 40 busy
                       # processes for 6 s
    start "$c" 120 $PY -m gpuwatch.record "${REC_ENGINE[@]}" --gap 2 --iters 6000 --sample-hz $HZ --out "$R/$c.parquet"
    cause "$c" cpu --procs "$PROCS" --delay 5 --seconds 6
    go_when "$c" recording "$c"; finish "$c" ;;
  *) echo "unknown case $c"; exit 2 ;;
  esac
done
$PY $P/truth.py "$R" > "$R/truth.txt" 2>&1
$PY benchmarks/trace_facts.py "$R"/*.parquet > "$R/trace_facts.txt" 2>&1
echo "total ${SECONDS} s" >> "$R/env.txt"
ls -la "$R" > "$R/files.txt"
tar czf "$OUT/issue27.tar.gz" -C "$OUT" issue27
ls -la "$OUT/issue27.tar.gz"; echo "total ${SECONDS} s"
