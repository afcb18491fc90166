#!/usr/bin/env bash
# Issues 7 and 8 on the lent H100, in parts that each fit one device call (10 minutes):
#   OUT=/some/dir PART=tests  bash benchmarks/device/h100_issue7_8.sh   # GPU tests, SIGTERM, several-GPU sampling; experiment 1
#   OUT=/some/dir PART=e2e3   bash benchmarks/device/h100_issue7_8.sh   # experiment 2; experiment 3's presets
#   OUT=/some/dir PART=sweep  bash benchmarks/device/h100_issue7_8.sh   # experiment 3's gap sweep
#   OUT=/some/dir PART=presets2 bash benchmarks/device/h100_issue7_8.sh # experiment 3's presets: graphs, spin
#   OUT=/some/dir PART=long   bash benchmarks/device/h100_issue7_8.sh   # a 9-minute recording: memory over time
# Results land in $OUT/PART.tgz (one file). Analysis runs elsewhere (the GPU machine has no
# ruptures): python benchmarks/seed_report.py DIR
set -uo pipefail
R="$OUT/$PART"; mkdir -p "$R"
source benchmarks/device/device_setup.sh
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.max.sm,pstate,power.draw,temperature.gpu \
    --format=csv > "$R/nvidia_smi_before.csv" 2>&1
case "$PART" in
tests)
  python3 -X faulthandler -m pytest -m gpu -q tests/test_gpu.py 2>&1 | tee "$R/gpu_tests.txt" | tail -3
  [ -n "${SKIP_SIGTERM:-}" ] || {
  # SIGTERM mid-recording on the real GPU: the trace must be complete up to the signal
  python3 -m gpuwatch.record --gap 20 --iters 100000 --quiet --out "$R/sigterm.parquet" &
  pid=$!; sleep 8; kill -TERM $pid; wait $pid; echo "record exit status after SIGTERM: $?" | tee "$R/sigterm.txt"
  python3 - "$R/sigterm.parquet" <<'PY' 2>&1 | tee -a "$R/sigterm.txt"
import sys, os, gpuwatch
t = gpuwatch.load(sys.argv[1])
it = t.measured()["iteration"].to_numpy()
print(f"status={t.meta['status']} inferences={len(t.inferences)} samples={len(t.samples)} "
      f"iterations contiguous={bool((it == range(len(it))).all())} "
      f"partial left={os.path.exists(sys.argv[1] + '.partial')}")
PY
  # every GPU sampled by one sampler (this machine has one; the code path is the same)
  python3 -m gpuwatch.record --sample-gpus all --gap 5 --iters 100 --quiet --out "$R/sample_all.parquet"
  }
  python3 -X faulthandler benchmarks/seed_experiments.py 1 ${E1_ONLY:+--only $E1_ONLY} --out "$R" 2>&1 \
      | tee "$R/experiment1.log" | tail -3
  ;;
e2e3)
  python3 benchmarks/seed_experiments.py 2 --out "$R" 2>&1 | tee "$R/experiment2.log" | tail -3
  python3 benchmarks/seed_experiments.py 3 --only _small_ --out "$R" 2>&1 | tee "$R/experiment3.log" | tail -2
  python3 benchmarks/seed_experiments.py 3 --only _large_ --out "$R" 2>&1 | tee -a "$R/experiment3.log" | tail -2
  ;;
sweep)
  python3 benchmarks/seed_experiments.py 3 --only _sweep_ --out "$R" 2>&1 | tee "$R/experiment3_sweep.log" | tail -3
  ;;
presets2)  # experiment 3's presets as CUDA graphs, and eager with a spin-wait
  python3 benchmarks/seed_experiments.py 3 --only '^e3_(?!sweep)(.*\+graph_(small|large)|.*_spin$)' \
      --out "$R" 2>&1 | tee "$R/experiment3_presets2.log" | tail -3
  ;;
long)
  python3 benchmarks/long_run.py --device cuda:0 --minutes "${MINUTES:-9}" --every-s 30 --out "$R" 2>&1 | tail -30
  ;;
esac
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.max.sm,pstate,power.draw,temperature.gpu \
    --format=csv > "$R/nvidia_smi_after.csv" 2>&1
tar czf "$OUT/$PART.tgz" -C "$OUT" "$PART"
ls -la "$OUT"
