#!/usr/bin/env bash
# The issue-5 figures: one edge-bench run over the compact and the MobileNetV2 artifacts on the NEU test
# split (batch 1 and 32), and the same with --corruptions for the compact model. Results under docs/bench/.
#
#   bash scripts/run_figures.sh            # both runs
#   ONLY=corruptions bash scripts/run_figures.sh
#
# Inputs (made by edge-train / edge-convert, see the README): runs/compact-s42/, runs/convert-compact/,
# and, when present, runs/mobilenetv2/ + runs/convert-mobilenetv2/.
set -euo pipefail
cd "$(dirname "$0")/.."
BENCH=${BENCH:-.venv/bin/edge-bench}
ITER=${ITER:-100}
WARMUP=${WARMUP:-10}
OUT=${OUT:-docs/bench}
ONLY=${ONLY:-all}
FORMATS="model.onnx model.fp16.onnx model.int8.onnx model.int8cpu.onnx"

arts() { for f in $FORMATS; do [ -f "$1/$f" ] && echo "$1/$f"; done; }

if [ "$ONLY" = all ] || [ "$ONLY" = main ]; then
  ARTS=$(arts runs/convert-compact)
  REFS="--reference runs/compact-s42/model.keras"
  if [ -f runs/convert-mobilenetv2/model.onnx ] && [ -f runs/mobilenetv2/model.keras ]; then
    ARTS="$ARTS $(arts runs/convert-mobilenetv2)"
    REFS="$REFS --reference runs/mobilenetv2/model.keras"
  else
    echo "run_figures: no runs/convert-mobilenetv2: benchmarking the compact model only" >&2
  fi
  # shellcheck disable=SC2086
  nice -n 10 $BENCH $ARTS $REFS --data data/NEU-CLS --split test --split-file runs/compact-s42/split.csv \
    --batch 1,32 --warmup "$WARMUP" --iterations "$ITER" \
    --json "$OUT/neu-test.json" --md "$OUT/neu-test.md" --plots "$OUT/plots"
fi

if [ "$ONLY" = all ] || [ "$ONLY" = corruptions ]; then
  # shellcheck disable=SC2046
  nice -n 10 $BENCH $(arts runs/convert-compact) --reference runs/compact-s42/model.keras \
    --data data/NEU-CLS --split test --split-file runs/compact-s42/split.csv \
    --batch 1,32 --warmup "$WARMUP" --iterations "$ITER" --corruptions \
    --json "$OUT/neu-test-corruptions.json" --md "$OUT/neu-test-corruptions.md" --plots "$OUT/plots-corruptions"
fi
