#!/usr/bin/env bash
# omni init: a new model folder from a config folder, its weights drawn from the seed; the folder
# loads, understands, draws, edits and trains, and bad requests fail with one line and leave
# nothing behind.
# usage: init.sh OMNI_BIN FIXTURES_DIR SOURCE_DIR
set -euo pipefail
omni=$1 fixtures=$2 src=$3
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
source "$(dirname "$0")/lib/common.sh"
cd "$src"

png_size() { od -An -tu1 -j16 -N8 "$1" | awk '{print $3 * 256 + $4 "x" $7 * 256 + $8}'; }

out=$("$omni" init --config configs/demo/omni-shapes --output "$tmp/a" --seed 1 --dtype bf16)
grep -q "^$tmp/a: a new u1 model, [0-9]* parameters in [0-9]* tensors (bf16, seed 1)$" <<<"$out" || fail "summary: $out"
for f in config.json tokenizer.json tokenizer_config.json model.safetensors; do
  [ -f "$tmp/a/$f" ] || fail "$f not written"
done
"$omni" init --config configs/demo/omni-shapes --output "$tmp/b" --seed 1 --dtype bf16 > /dev/null
cmp -s "$tmp/a/model.safetensors" "$tmp/b/model.safetensors" || fail "the same seed wrote different weights"
"$omni" init --config configs/demo/omni-shapes --output "$tmp/c" --seed 2 --dtype bf16 > /dev/null
cmp -s "$tmp/a/model.safetensors" "$tmp/c/model.safetensors" && fail "another seed wrote the same weights"
"$omni" inspect "$tmp/a/model.safetensors" | grep -q "dtypes: BF16×[0-9]*$" || fail "inspect: not all bf16"

# the new model works in every mode at the config's own image size (64 x 64, "omni" block)
"$omni" shapes --output "$tmp/data" --train 2 --heldout 1 --seed 4 > /dev/null
img="$tmp/data/images/train_00000.png"
"$omni" --log warn infer --model_path "$tmp/a" --mode understand --image "$img" --prompt "What shape is this?" \
  --max_new_tokens 4 > /dev/null || fail "understand"
"$omni" --log warn infer --model_path "$tmp/a" --mode generate --prompt "a small red circle in the center" --steps 2 \
  --output "$tmp/g.png" > /dev/null || fail "generate"
[ "$(png_size "$tmp/g.png")" = "64x64" ] || fail "generate: $(png_size "$tmp/g.png"), 64x64 expected"
# --output by its extension: .jpg / .jpeg write a JPEG (read back as the next run's input image),
# an extension it cannot write fails before any work and writes nothing
"$omni" --log warn infer --model_path "$tmp/a" --mode generate --prompt "a small red circle in the center" --steps 2 \
  --output "$tmp/g.JPG" > /dev/null || fail "generate .JPG"
[ "$(od -An -tx1 -N3 "$tmp/g.JPG" | tr -d ' ')" = "ffd8ff" ] || fail "--output g.JPG is not a JPEG"
"$omni" --log warn infer --model_path "$tmp/a" --mode understand --image "$tmp/g.JPG" --prompt "What shape is this?" \
  --max_new_tokens 2 > /dev/null || fail "understand the generated JPEG"
expect_error "--output $tmp/g.bmp: cannot write '.bmp' images (write .png, .jpg or .jpeg)" \
  "$omni" infer --model_path "$tmp/a" --mode generate --prompt "a circle" --steps 2 --output "$tmp/g.bmp"
[ ! -e "$tmp/g.bmp" ] || fail "--output g.bmp was written"
"$omni" --log warn infer --model_path "$tmp/a" --mode edit --image "$img" --prompt "Make the circle blue." --steps 2 \
  --output "$tmp/e.png" > /dev/null || fail "edit"
[ "$(png_size "$tmp/e.png")" = "64x64" ] || fail "edit: $(png_size "$tmp/e.png"), 64x64 expected"
"$omni" --log warn train configs/demo/omni-shapes.yaml --model.model_path "$tmp/a" \
  --data.train_path "$tmp/data/train.jsonl" --data.image_root "$tmp/data" --train.max_steps 1 \
  --train.micro_batch_size 5 --train.global_batch_size 10 --train.save_hf_weights false \
  --train.output_dir "$tmp/run" > /dev/null
grep -q '"step":1' "$tmp/run/metrics.jsonl" || fail "no training step from the new model"

# a config folder's weights are never copied: the new folder's are the new ones
"$omni" init --config "$fixtures/u1_tiny" --output "$tmp/t" > /dev/null
[ "$(ls "$tmp/t" | grep -c safetensors)" -eq 1 ] || fail "weights copied: $(ls "$tmp/t")"

expect_error "--output: $tmp/a is not empty" "$omni" init --config configs/demo/omni-shapes --output "$tmp/a"
expect_error "--config: $tmp/none is not a folder" "$omni" init --config "$tmp/none" --output "$tmp/d"
expect_error "--config: $tmp/data has no config.json" "$omni" init --config "$tmp/data" --output "$tmp/d"
expect_error "--dtype int8: omni init stores fp32, bf16 or fp16 weights" "$omni" init --config configs/demo/omni-shapes --output "$tmp/d" --dtype int8
expect_error "the janus family cannot be initialised" "$omni" init --config "$fixtures/janus_tiny" --output "$tmp/d"
[ -e "$tmp/d" ] && fail "a refused init left $tmp/d behind"
mkdir "$tmp/badcfg"
sed 's/"image_size": \[/"image_size": [48, /' configs/demo/omni-shapes/config.json > "$tmp/badcfg/config.json"
expect_error "omni.image_size: must be" "$omni" init --config "$tmp/badcfg" --output "$tmp/d"
[ -e "$tmp/d" ] && fail "a failed init left $tmp/d behind"
echo "init: all checks passed"
