#!/usr/bin/env bash
# The one device call that made layout_gpu/ and probe_every_ab/: issue 32's layout on the GPU,
# then --probe-every 20 against the default stamps (../../h100_noprobe_2026-12-07/scripts/stamps_ab.sh).
#   bash benchmarks/results/h100_layout_2026-12-07/scripts/run.sh   (from the repository root)
set -uo pipefail
HERE="$(dirname "$0")"
FINAL="$OUT"
export OUT=/tmp/o13; mkdir -p "$OUT"
bash "$HERE/layout_gpu.sh"
tar czf "$FINAL/layout_gpu.tgz" -C "$OUT" layout_gpu
NAME=probe_every_ab ARM=every20 FLAGS="--probe-every 20" timeout $((570 - SECONDS)) bash benchmarks/results/h100_noprobe_2026-12-07/scripts/stamps_ab.sh
cp "$OUT/probe_every_ab.tgz" "$FINAL/"
