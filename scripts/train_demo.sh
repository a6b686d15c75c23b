#!/usr/bin/env bash
# Retrains the bundled demo model (models/omni-shapes) from nothing with the committed recipe:
# the data set, a freshly initialised model, the training run (configs/demo/omni-shapes.yaml) and
# the scores of the result. About an hour on 2 CPU cores; not part of CI.
#   scripts/train_demo.sh          # writes data/shapes, data/omni-shapes-init, data/omni-shapes-run
# data/omni-shapes-init and data/omni-shapes-run are this script's own work folders: a rerun
# starts them afresh. The trained model is data/omni-shapes-run/checkpoints/global_step_N/hf_ckpt
# (models/omni-shapes is that folder plus its model card and example pictures).
set -euo pipefail
cd "$(dirname "$0")/.."
omni=${OMNI:-build/omni}
[ -x "$omni" ] || { echo "error: $omni: not built (run scripts/setup.sh first)" >&2; exit 1; }
recipe=configs/demo/omni-shapes.yaml
steps=$(awk '/^  max_steps:/ {print $2}' "$recipe")

"$omni" shapes --output data/shapes --seed 0 --train 10000
rm -rf data/omni-shapes-init data/omni-shapes-run
"$omni" init --config configs/demo/omni-shapes --output data/omni-shapes-init --seed 0 --dtype bf16
start=$(date +%s)
"$omni" train "$recipe"
echo "trained in $(( ($(date +%s) - start) / 60 )) min"
model=data/omni-shapes-run/checkpoints/global_step_$steps/hf_ckpt
"$omni" --log warn eval --model_path "$model" --data data/shapes/eval_mc.jsonl --output data/omni-shapes-run/eval_mc.jsonl
"$omni" --log warn eval --task shapes --model_path "$model" --data data/shapes/heldout.jsonl --limit 100 \
  --output data/omni-shapes-run/eval_shapes.jsonl
echo "the model: $model"
