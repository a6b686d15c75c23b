#!/usr/bin/env bash
# omni shapes: the demo data set feeds the trainer (every sample kind: captions, answers,
# multiple choice, text-to-image, edits) and omni eval (its questions, and its captions and edits
# through --task shapes), as written.
# usage: shapes.sh OMNI_BIN FIXTURES_DIR SOURCE_DIR
set -euo pipefail
omni=$1 fixtures=$2 src=$3
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
source "$(dirname "$0")/lib/common.sh"
cd "$src"

out=$("$omni" shapes --output "$tmp/data" --train 4 --heldout 2 --seed 3)
[ "$out" = "$tmp/data: train.jsonl 20 samples, heldout.jsonl 10, eval_mc.jsonl 2 questions" ] || fail "summary: $out"
for kind in caption qa mc t2i edit; do
  [ "$(grep -c "\"id\":\"train-[0-9]*-$kind\"" "$tmp/data/train.jsonl")" -eq 4 ] || fail "4 $kind samples expected"
done
# one step of SenseNova-U1 on all 20 samples
"$omni" --log warn train examples/train/u1_tiny.yaml --data.train_path "$tmp/data/train.jsonl" \
  --data.image_root "$tmp/data" --train.max_steps 1 --train.micro_batch_size 4 --train.global_batch_size 20 \
  --train.save_hf_weights false --train.output_dir "$tmp/run" > /dev/null
grep -q '"step":1' "$tmp/run/metrics.jsonl" || fail "no training step"
grep -q '"gen_tokens":[1-9]' "$tmp/run/metrics.jsonl" || fail "no generation targets trained"
grep -q '"ce_tokens":[1-9]' "$tmp/run/metrics.jsonl" || fail "no text targets trained"
out=$("$omni" --log warn eval --model_path "$fixtures/u1_tiny" --data "$tmp/data/eval_mc.jsonl" --max_new_tokens 2)
grep -q "^accuracy: .* of 2; " <<<"$out" || fail "eval: $out"
# the drawing checks: each held-out caption drawn and each edit made (random weights: the scores
# are whatever they are; what is checked is that every sample is drawn, asked right and recorded)
out=$("$omni" --log warn eval --task shapes --model_path "$fixtures/u1_tiny" --data "$tmp/data/heldout.jsonl" --steps 2 \
  --output "$tmp/draw.jsonl")
grep -q "^generation: [0-9.]*% ([0-9] of 2 pictures show their caption) \[u1\]$" <<<"$out" || fail "generation line: $out"
grep -q "^edit: [0-9.]*% ([0-9] of 2 edits show the asked change) \[u1\]$" <<<"$out" || fail "edit line: $out"
[ "$(wc -l < "$tmp/draw.jsonl")" -eq 4 ] || fail "4 drawings expected: $(cat "$tmp/draw.jsonl")"
for i in 0 1; do  # asked = the data set's own caption of the scene
  cap=$(grep -o "\"id\":\"heldout-$i-t2i\",\"images\"" "$tmp/data/heldout.jsonl" > /dev/null &&
        grep "\"id\":\"heldout-$i-t2i\"" "$tmp/data/heldout.jsonl" | grep -o '"value":"a [^"]*' | cut -d'"' -f4)
  grep -q "\"asked\":\"$cap\",.*\"id\":\"heldout-$i-t2i\"" "$tmp/draw.jsonl" || fail "heldout-$i: not asked \"$cap\""
done
# edits only, with the CFG scales set: the missing kind is said to be unchecked, not scored 0%
grep -- '-edit"' "$tmp/data/heldout.jsonl" > "$tmp/data/edits.jsonl"
out=$("$omni" --log warn eval --task shapes --model_path "$fixtures/u1_tiny" --data "$tmp/data/edits.jsonl" --steps 2 \
  --cfg_text_scale 2 --cfg_img_scale 1.5)
grep -q "^generation: not checked (no text-to-image samples in the data)$" <<<"$out" &&
  grep -q "^edit: [0-9.]*% ([0-9] of 2 edits show the asked change) \[u1\]$" <<<"$out" || fail "edits only: $out"
expect_error "--cfg_img_scale: must be >= 0" "$omni" eval --task shapes --model_path "$fixtures/u1_tiny" \
  --data "$tmp/data/edits.jsonl" --cfg_img_scale -1
out=$("$omni" --log warn eval --task shapes --model_path "$fixtures/janus_tiny" --data "$tmp/data/heldout.jsonl" --limit 1)
grep -q "^generation: .* (.* of 1 pictures" <<<"$out" && grep -q "^edit: not checked (janus does not edit)" <<<"$out" ||
  fail "janus: $out"
expect_error "--task: must be mc or shapes" "$omni" eval --task poems --model_path "$fixtures/u1_tiny" --data "$tmp/data/heldout.jsonl"
# a multiple-choice file (or any with nothing to draw) is one error line, not a score of nothing
expect_error "eval_mc.jsonl: no samples to draw: no text-to-image or edit sample" "$omni" eval --task shapes \
  --model_path "$fixtures/u1_tiny" --data "$tmp/data/eval_mc.jsonl"
expect_error "edits.jsonl: no samples to draw: no text-to-image sample .*; this model does not edit" "$omni" eval \
  --task shapes --model_path "$fixtures/janus_tiny" --data "$tmp/data/edits.jsonl"
expect_error "not a shapes caption" "$omni" eval --task shapes --model_path "$fixtures/u1_tiny" \
  --data examples/train/u1_tiny.jsonl --image_root examples/train/images
expect_error "--size: must be in \[16, 1024\]" "$omni" shapes --output "$tmp/x" --size 4
# every question kind as multiple choice, answered in words
out=$("$omni" shapes --output "$tmp/mc" --train 2 --heldout 1 --seed 3 --mc_questions 5 --mc_answer reply)
[ "$out" = "$tmp/mc: train.jsonl 18 samples, heldout.jsonl 9, eval_mc.jsonl 1 questions" ] || fail "mc summary: $out"
n=$(grep -c '"id":"train-[0-9]*-mc[2-5]*"' "$tmp/mc/train.jsonl")
[ "$n" -eq 10 ] || fail "10 multiple-choice samples expected, got $n"
n=$(grep '"id":"train-[0-9]*-mc[2-5]*"' "$tmp/mc/train.jsonl" | grep -c '"value":"[A-Z][a-z ]*\."')
[ "$n" -eq 10 ] || fail "10 answers like \"Green.\" expected, got $n"
expect_error "--mc_questions: must be in \[1, 5\]" "$omni" shapes --output "$tmp/x" --mc_questions 6
expect_error "--mc_answer: must be letter or reply" "$omni" shapes --output "$tmp/x" --mc_answer word
# two-shape scenes edited at both shapes
out=$("$omni" shapes --output "$tmp/two" --train 3 --heldout 1 --seed 4 --two_shapes 10 --edits 2)
[ "$out" = "$tmp/two: train.jsonl 18 samples, heldout.jsonl 6, eval_mc.jsonl 1 questions" ] || fail "two summary: $out"
n=$(grep '"id":"train-[0-9]*-caption"' "$tmp/two/train.jsonl" | grep -c ' and a ')
[ "$n" -eq 3 ] || fail "3 two-shape captions expected, got $n"
[ -f "$tmp/two/images/train_00002_edit2.png" ] || fail "no second edit picture"
# edits answered with a plan first (the edited scene's caption in a think block): the plan is a
# text target of the edit sample, where a plain edit has none
"$omni" shapes --output "$tmp/plan" --train 2 --heldout 1 --seed 5 --two_shapes 10 --edit_plan > /dev/null
n=$(grep '"id":"train-[0-9]*-edit"' "$tmp/plan/train.jsonl" |
    grep -c '"value":"<think>\\nA [a-z ]* and a [a-z ]*\.\\n</think>\\n\\n<image>"')
[ "$n" -eq 2 ] || fail "2 planned two-shape edits expected, got $n"
for d in plan two; do
  grep -- '-edit"' "$tmp/$d/train.jsonl" | head -2 > "$tmp/$d/edits.jsonl"
  "$omni" --log warn train examples/train/u1_tiny.yaml --data.train_path "$tmp/$d/edits.jsonl" \
    --data.image_root "$tmp/$d" --train.max_steps 1 --train.micro_batch_size 2 --train.global_batch_size 2 \
    --data.cfg_txt_uncond_drop_prob 0 --data.cfg_img_uncond_drop_prob 0 --data.cfg_txtimg_uncond_drop_prob 0 \
    --train.save_hf_weights false --train.output_dir "$tmp/run-$d" > /dev/null
done
grep -q '"ce_tokens":[1-9]' "$tmp/run-plan/metrics.jsonl" || fail "the plans were not trained: $(cat "$tmp/run-plan/metrics.jsonl")"
grep -q '"ce_tokens":0,' "$tmp/run-two/metrics.jsonl" || fail "plain edits have text targets: $(cat "$tmp/run-two/metrics.jsonl")"
expect_error "--two_shapes: must be in \[0, 10\]" "$omni" shapes --output "$tmp/x" --two_shapes 11
expect_error "--edit_place: must be in \[0, 10\]" "$omni" shapes --output "$tmp/x" --edit_place 11
expect_error "--edits: must be in \[1, 4\]" "$omni" shapes --output "$tmp/x" --edits 0
echo "shapes: all checks passed"
