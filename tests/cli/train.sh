#!/usr/bin/env bash
# omni train end to end: the committed example (examples/train) learns and its export answers in
# omni infer; a kill -9 during a checkpoint save resumes to the same losses as a straight run;
# DEBUG=1; bad input gives one error line.
# usage: train.sh OMNI_BIN FIXTURES_DIR SOURCE_DIR
set -euo pipefail
omni=$1 fixtures=$2 src=$3
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
source "$(dirname "$0")/lib/common.sh"
losses() { grep -o '"loss":[^,]*' "$1"; }  # the loss column of a metrics.jsonl
# (first lines with `sed -n 1p`, not `head -1`: under pipefail head's early exit can SIGPIPE the writer)

cd "$src"
# 1. The README's example: 30 steps, then the export answers what it was taught.
out="$tmp/example"
"$omni" --log warn train examples/train/janus_tiny.yaml --train.output_dir "$out" > "$tmp/log"
grep -q "trained 30 steps" "$tmp/log" || fail "example summary: $(cat "$tmp/log")"
[ "$(wc -l < "$out/metrics.jsonl")" -eq 30 ] || fail "30 metrics lines"
first=$(losses "$out/metrics.jsonl" | sed -n 1p | cut -d: -f2); last=$(losses "$out/metrics.jsonl" | tail -1 | cut -d: -f2)
awk -v a="$first" -v b="$last" 'BEGIN { exit !(b < 0.1 * a) }' || fail "loss $first -> $last is not below 10%"
hf="$out/checkpoints/global_step_30/hf_ckpt"
[ -f "$out/checkpoints/global_step_30/COMPLETE" ] || fail "completion marker"
[ -f "$out/checkpoints/global_step_15/COMPLETE" ] || fail "step-15 checkpoint"
[ -f "$out/loss.png" ] || fail "loss.png"
grep -q "max_steps: 30" "$out/config.yaml" || fail "resolved config"
ans=$("$omni" infer --model_path "$hf" --mode understand --image examples/train/images/blue_square.png --prompt "What shape is this?" 2>/dev/null)
[ "$ans" = " A blue square." ] || fail "exported model answers '$ans'"
ans=$("$omni" infer --model_path "$hf" --mode understand --image examples/train/images/green_triangle.png --prompt "What shape is this?" 2>/dev/null)
[ "$ans" = " A green triangle." ] || fail "exported model answers '$ans'"
"$omni" infer --model_path "$hf" --mode generate --prompt "A red circle on a white background." --output "$tmp/gen.png" >/dev/null 2>&1
[ -s "$tmp/gen.png" ] || fail "exported model draws"

# 1b. The BAGEL example: CE + flow MSE; the export answers.
out="$tmp/bagel"
"$omni" --log warn train examples/train/bagel_tiny.yaml --train.output_dir "$out" > "$tmp/log"
grep -q "trained 200 steps" "$tmp/log" || fail "bagel example summary: $(cat "$tmp/log")"
col() { grep -o "\"$2\":[^,]*" "$1" | cut -d: -f2; }  # one column of a metrics.jsonl
# expect_learns NAME DIR CE_FRAC GEN_FRAC: the mean of the last 10 steps' CE / generation loss is
# below that fraction of the first step's. CE memorises; the flow loss keeps the noise of a fresh
# timestep and noise every step.
expect_learns() {
  local ce0 gen0 ce_end gen_end
  ce0=$(col "$2/metrics.jsonl" ce_loss | sed -n 1p); gen0=$(col "$2/metrics.jsonl" gen_loss | sed -n 1p)
  ce_end=$(col "$2/metrics.jsonl" ce_loss | tail -10 | awk '{ s += $1 } END { print s / NR }')
  gen_end=$(col "$2/metrics.jsonl" gen_loss | tail -10 | awk '{ s += $1 } END { print s / NR }')
  awk -v a="$ce0" -v b="$ce_end" -v f="$3" 'BEGIN { exit !(b < f * a) }' || fail "$1 CE $ce0 -> $ce_end (last 10) is not below $3 of it"
  awk -v a="$gen0" -v b="$gen_end" -v f="$4" 'BEGIN { exit !(a > 0 && b < f * a) }' || fail "$1 generation loss $gen0 -> $gen_end (last 10) is not below $4 of it"
}
expect_learns bagel "$out" 0.1 0.75
hf="$out/checkpoints/global_step_200/hf_ckpt"
[ -f "$hf/ema.safetensors" ] && [ -f "$hf/ae.safetensors" ] || fail "bagel export layout: $(ls "$hf")"
ans=$("$omni" infer --model_path "$hf" --mode understand --image tests/fixtures/bagel_tiny/und_image.png --prompt "Is there a circle?" 2>/dev/null)
[ "$ans" = "Yes, a red one." ] || fail "exported BAGEL answers '$ans'"
"$omni" infer --model_path "$hf" --mode edit --image tests/fixtures/bagel_tiny/edit_image.png --prompt "turn it around" \
  --steps 5 --output "$tmp/edit.png" > /dev/null 2>&1 || fail "exported BAGEL edits"
[ -s "$tmp/edit.png" ] || fail "exported BAGEL edit output"

# 1c. The SenseNova-U1 example: CE (1/sqrt(N)-weighted) + the pixel flow loss; the export answers
# and draws.
out="$tmp/u1"
"$omni" --log warn train examples/train/u1_tiny.yaml --train.output_dir "$out" > "$tmp/log"
grep -q "trained 60 steps" "$tmp/log" || fail "u1 example summary: $(cat "$tmp/log")"
expect_learns u1 "$out" 0.2 0.75
hf="$out/checkpoints/global_step_60/hf_ckpt"
[ -f "$hf/model.safetensors" ] && [ -f "$hf/config.json" ] && [ -f "$hf/tokenizer.json" ] || fail "u1 export layout: $(ls "$hf")"
ans=$("$omni" infer --model_path "$hf" --image examples/train/images/red_circle.png --prompt "What shape is this?" 2>/dev/null)
[ "$ans" = "A red circle." ] || fail "exported U1 answers '$ans'"
"$omni" infer --model_path "$hf" --mode generate --prompt "a blue square" --width 64 --height 64 --steps 4 \
  --output "$tmp/u1.png" > /dev/null 2>&1 || fail "exported U1 draws"
[ -s "$tmp/u1.png" ] || fail "exported U1 output"

# 1c'. BAGEL's freeze_und trains (the understanding rows detached); the other families refuse it.
"$omni" --log warn train examples/train/bagel_tiny.yaml --train.freeze_und true --train.max_steps 2 \
  --train.save_hf_weights false --train.output_dir "$tmp/bagel_fu" > /dev/null || fail "bagel freeze_und"
expect_error "freeze_und: does not apply to janus" "$omni" --log warn train examples/train/janus_tiny.yaml \
  --train.freeze_und true --train.output_dir "$tmp/janus_fu"

# 1d. U1's CFG condition dropout at high rates: each step's dropped variants (shorter sequences)
# are re-planned before the step (a mismatch would stop the run as a family bug), and the draws
# come from the run's generator: two runs from one seed log the same steps.
args=(examples/train/u1_tiny.yaml --train.max_steps 6 --train.save_hf_weights false
      --data.cfg_txt_uncond_drop_prob 0.3 --data.cfg_txtimg_uncond_drop_prob 0.6)
"$omni" --log warn train "${args[@]}" --train.output_dir "$tmp/u1drop_a" > /dev/null || fail "u1 with CFG dropout"
"$omni" --log warn train "${args[@]}" --train.output_dir "$tmp/u1drop_b" > /dev/null || fail "u1 with CFG dropout (again)"
n=$(col "$tmp/u1drop_a/metrics.jsonl" tokens | sort -u | wc -l)
[ "$n" -ge 2 ] || fail "u1 CFG dropout never changed a step's tokens: $(col "$tmp/u1drop_a/metrics.jsonl" tokens | tr '\n' ' ')"
for c in loss tokens; do
  [ "$(col "$tmp/u1drop_a/metrics.jsonl" $c)" = "$(col "$tmp/u1drop_b/metrics.jsonl" $c)" ] || fail "u1 CFG dropout runs differ in $c"
done

# 2. Exact resume after a kill -9 in the middle of a checkpoint save.
args=(examples/train/janus_tiny.yaml --train.max_steps 6 --train.save_steps 3 --train.save_hf_weights false
      --train.global_batch_size 2 --train.lr 3e-3 --train.warmup_steps 2)
"$omni" --log warn train "${args[@]}" --train.output_dir "$tmp/straight" > /dev/null
set +e
OMNI_TEST_DIE_DURING_SAVE=6 "$omni" --log warn train "${args[@]}" --train.output_dir "$tmp/killed" > /dev/null 2>&1 &
exec 3>&2 2>/dev/null; wait $!; rc=$?; exec 2>&3 3>&-; set -e  # (bash reports the kill on stderr)
[ $rc -eq 137 ] || fail "the save-time kill did not happen (rc $rc)"
[ -d "$tmp/killed/checkpoints/global_step_6.tmp" ] || fail "torn checkpoint left behind"
[ ! -e "$tmp/killed/checkpoints/global_step_6" ] || fail "a torn checkpoint must not look complete"
"$omni" --log warn train "${args[@]}" --train.output_dir "$tmp/killed" --train.load_path auto > /dev/null
diff <(losses "$tmp/straight/metrics.jsonl") <(losses "$tmp/killed/metrics.jsonl") || fail "resumed losses differ"
cmp "$tmp/straight/checkpoints/global_step_6/model.safetensors" "$tmp/killed/checkpoints/global_step_6/model.safetensors" \
  || fail "resumed weights differ"
[ ! -e "$tmp/killed/checkpoints/global_step_6.tmp" ] || fail "stale .tmp not cleaned"

# 3. DEBUG=1: three steps.
DEBUG=1 "$omni" train examples/train/janus_tiny.yaml --train.output_dir "$tmp/debug" --train.save_hf_weights false \
  > "$tmp/log" 2> "$tmp/err"
grep -q "trained 3 steps" "$tmp/log" || fail "DEBUG=1 steps: $(cat "$tmp/log")"
grep -q "^\[debug\]" "$tmp/err" || fail "DEBUG=1 is verbose"

# 4. Bad input: one line, non-zero, no crash (--log error: the info lines before a data error are not the error).
expect_error "cannot read the config file" "$omni" --log error train "$tmp/none.yaml"
mkfifo "$tmp/fifo"  # a pipe, folder or device is refused, not read forever
expect_error "fifo: not a regular file" timeout 60 "$omni" --log error train "$tmp/fifo"
expect_error "not a regular file" "$omni" --log error train "$tmp"
expect_error "unknown key (valid train keys:" "$omni" --log error train examples/train/janus_tiny.yaml --train.learning_rate 1
expect_error "expected a number, got 'x'" "$omni" --log error train examples/train/janus_tiny.yaml --train.lr x
printf 'model: [oops\n' > "$tmp/bad.yaml"
expect_error "not valid YAML" "$omni" --log error train "$tmp/bad.yaml"
cp examples/train/shapes.jsonl "$tmp/data.jsonl"; cp -r examples/train/images "$tmp/images"
echo '{"images": ["images/none.png"], "conversations": [{"from": "human", "value": "<image>"}, {"from": "gpt", "value": "x"}]}' >> "$tmp/data.jsonl"
expect_error "data.jsonl:6: image 'images/none.png': no such file" "$omni" --log error train examples/train/janus_tiny.yaml \
  --data.train_path "$tmp/data.jsonl" --train.output_dir "$tmp/bad"
"$omni" train examples/train/janus_tiny.yaml --data.train_path "$tmp/data.jsonl" --data.skip_bad_samples true \
  --train.output_dir "$tmp/skip" --train.max_steps 1 --train.save_hf_weights false > /dev/null 2> "$tmp/err"
grep -q "5 samples from 6 lines; 1 bad skipped" "$tmp/err" || fail "skip count: $(cat "$tmp/err")"
echo '{"images": ["images/red_circle.png"], "conversations": [{"from": "human", "value": "x"}, {"from": "gpt", "value": "<image> and text"}]}' > "$tmp/one.jsonl"
expect_error "one.jsonl:1: .*exactly one image and no text" "$omni" --log error train examples/train/janus_tiny.yaml \
  --data.train_path "$tmp/one.jsonl" --train.output_dir "$tmp/bad2"
expect_error "data.max_seq_len 16" "$omni" --log error train examples/train/janus_tiny.yaml --data.max_seq_len 16 --train.output_dir "$tmp/bad3"
expect_error "model.model_path" "$omni" --log error train examples/train/janus_tiny.yaml --model.model_path "$tmp/nothing" --train.output_dir "$tmp/bad4"
echo "train.sh: ok"
