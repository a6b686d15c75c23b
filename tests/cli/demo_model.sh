#!/usr/bin/env bash
# The bundled demo model, models/omni-shapes, which omni trained itself (configs/demo/
# omni-shapes.yaml, omni-shapes-mc.yaml, then omni-shapes-plan.yaml): the README's first command
# answers right, a lettered question is answered in words, an edit is planned in words before it
# is drawn (the config's think_before_edit), and on a slice of the held-out set it scores far above
# chance at multiple choice (chance: 1/3 or 1/4), drawing and editing (checked by the shape check;
# a random picture shows its caption almost never).
# usage: demo_model.sh OMNI_BIN FIXTURES_DIR SOURCE_DIR
set -euo pipefail
omni=$1 src=$3
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
source "$(dirname "$0")/lib/common.sh"
cd "$src"
model=models/omni-shapes

percent() { sed -n "s/^$1: \([0-9]*\)\.[0-9]*%.*/\1/p" <<<"$2"; }

# the README's first command
out=$("$omni" --log warn infer --model_path $model --mode understand --image $model/examples/scene.png \
  --prompt "What shape is this?")
[ "$out" = "A circle." ] || fail "the first command answered: $out"
out=$("$omni" --log warn infer --model_path $model --mode understand --image $model/examples/scene.png \
  --prompt "Describe the image.")
[ "$out" = "A large red circle in the center." ] || fail "caption: $out"
out=$("$omni" --log warn infer --model_path $model --mode understand --image $model/examples/scene.png \
  --prompt $'What colour is the circle?\nA. blue\nB. red\nC. green\nD. yellow\nAnswer with the option\'s letter from the given choices directly.')
[ "$out" = "Red." ] || fail "multiple choice, answered in words: $out"

# the README's edit: the plan (the edited scene's caption) is printed, then the picture's path
out=$("$omni" --log warn infer --model_path $model --mode edit --image $model/examples/scene.png \
  --prompt "Make the circle green." --output "$tmp/green.png")
[ "$out" = $'A large green circle in the center.\n</think>\n'"$tmp/green.png" ] || fail "edit: $out"
[ -s "$tmp/green.png" ] || fail "edit: no picture"

# the model card's held-out scenes 0-59 (the held-out stream does not depend on --train)
"$omni" shapes --output "$tmp/data" --seed 0 --train 1 --heldout 60 > /dev/null
out=$("$omni" --log warn eval --model_path $model --data "$tmp/data/eval_mc.jsonl")
mc=$(percent accuracy "$out")
[ -n "$mc" ] && [ "$mc" -ge 85 ] || fail "multiple choice: $out (floor 85%)"
out=$("$omni" --log warn eval --task shapes --model_path $model --data "$tmp/data/heldout.jsonl" --limit 10)
gen=$(percent generation "$out") edit=$(percent edit "$out")
[ -n "$gen" ] && [ "$gen" -ge 60 ] || fail "generation: $out (floor 60%)"
[ -n "$edit" ] && [ "$edit" -ge 60 ] || fail "edit: $out (floor 60%)"
echo "demo_model: multiple choice $mc%, generation $gen%, edit $edit% (floors 85, 60, 60): all checks passed"
