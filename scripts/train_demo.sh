#!/usr/bin/env bash
# Retrains the bundled demo model (models/omni-shapes) from nothing with the committed recipe:
# the data sets, a freshly initialised model, the three training stages (configs/demo/
# omni-shapes.yaml, omni-shapes-mc.yaml, then omni-shapes-plan.yaml) and the scores of the
# result. About 2.5 hours on 2 CPU cores; not part of CI.
#   scripts/train_demo.sh     # writes data/shapes, data/shapes-mc, data/shapes-plan and
#                             # data/omni-shapes-{init,run,mc-run,plan-run}
# Those are this script's own work folders: a rerun starts them afresh. The trained model is
# data/omni-shapes-plan-run/checkpoints/global_step_N/hf_ckpt (models/omni-shapes is that folder
# plus its model card and example pictures). Its config.json, from configs/demo/omni-shapes,
# says "think_before_edit": true: the model plans its edits in words (the third stage), so
# --mode edit and omni eval's edits think first without --think.
set -euo pipefail
cd "$(dirname "$0")/.."
omni=${OMNI:-build/omni}
[ -x "$omni" ] || { echo "error: $omni: not built (run scripts/setup.sh first)" >&2; exit 1; }
stage1=configs/demo/omni-shapes.yaml stage2=configs/demo/omni-shapes-mc.yaml stage3=configs/demo/omni-shapes-plan.yaml
steps=$(awk '/^  max_steps:/ {print $2}' "$stage3")

"$omni" shapes --output data/shapes --seed 0 --train 10000
"$omni" shapes --output data/shapes-mc --seed 1 --train 10000 --mc_answer reply
"$omni" shapes --output data/shapes-plan --seed 2 --train 6000 --mc_answer reply --edit_plan --two_shapes 5 --edits 2
rm -rf data/omni-shapes-init data/omni-shapes-run data/omni-shapes-mc-run data/omni-shapes-plan-run
"$omni" init --config configs/demo/omni-shapes --output data/omni-shapes-init --seed 0 --dtype bf16
start=$(date +%s)
"$omni" train "$stage1"  # from scratch: captions, answers, letters, drawing and editing
"$omni" train "$stage2"  # on from stage 1's model: multiple choice answered in words
"$omni" train "$stage3"  # on from stage 2's model: every edit planned in words first
echo "trained in $(( ($(date +%s) - start) / 60 )) min"
model=data/omni-shapes-plan-run/checkpoints/global_step_$steps/hf_ckpt
"$omni" --log warn eval --model_path "$model" --data data/shapes/eval_mc.jsonl --output data/omni-shapes-plan-run/eval_mc.jsonl
"$omni" --log warn eval --task shapes --model_path "$model" --data data/shapes/heldout.jsonl --limit 100 \
  --output data/omni-shapes-plan-run/eval_shapes.jsonl
echo "the model: $model"
