#!/usr/bin/env bash
# omni eval: multiple-choice visual questions through each family that understands images. The
# accuracy line counts what the predictions file says; --score generate records the answer and
# the choice read from it, --score loglik one score per option and picks the largest; bad input
# is one error line before the model loads.
# usage: eval.sh OMNI_BIN FIXTURES_DIR SOURCE_DIR
set -euo pipefail
omni=$1 fixtures=$2 src=$3
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
source "$(dirname "$0")/lib/common.sh"
cd "$src"

cp examples/train/images/*.png "$tmp/"
cat > "$tmp/set.jsonl" <<'JSONL'
{"id": "circle", "image": "red_circle.png", "question": "What shape is this?", "options": ["circle", "square", "triangle"], "answer": "A"}
{"id": "square", "images": ["blue_square.png"], "question": "What colour is the shape?", "options": ["red", "blue", "green"], "answer": "blue"}
{"id": "triangle", "image": "green_triangle.png", "question": "Is it a triangle?", "options": ["yes", "no"], "answer": 0}
JSONL

# check_run PREDS STDOUT: three predictions; the accuracy line's count is the predictions' count
check_run() {
  [ "$(wc -l < "$1")" -eq 3 ] || fail "$1: expected 3 predictions: $(cat "$1")"
  local right; right=$(grep -c '"correct":true' "$1" || true)
  grep -q "^accuracy: [0-9.]*% ($right of 3; " <<<"$2" || fail "accuracy line does not count $right correct: $2"
  for id in circle square triangle; do grep -q "\"id\":\"$id\"" "$1" || fail "$1: no prediction for $id"; done
  grep -q '"answer":"A".*"id":"circle"\|"id":"circle".*"answer":"A"' "$1" || fail "$1: circle's answer is A"
}

for model in janus_tiny bagel_tiny u1_tiny; do
  out=$("$omni" --log warn eval --model_path "$fixtures/$model" --data "$tmp/set.jsonl" --output "$tmp/$model.jsonl" \
    --max_new_tokens 4)
  check_run "$tmp/$model.jsonl" "$out"
  [ "$(grep -c '"prediction":' "$tmp/$model.jsonl")" -eq 3 ] || fail "$model: answers not recorded"
done

# --score loglik: one score per option, the choice is the highest-scoring option
out=$("$omni" --log warn eval --model_path "$fixtures/janus_tiny" --data "$tmp/set.jsonl" --score loglik \
  --output "$tmp/loglik.jsonl")
check_run "$tmp/loglik.jsonl" "$out"
while read -r line; do
  scores=$(grep -o '"scores":\[[^]]*\]' <<<"$line" | sed 's/.*\[//; s/\]//')
  choice=$(grep -o '"choice":"[A-Z]"' <<<"$line" | cut -d'"' -f4)
  [ -n "$scores" ] && [ -n "$choice" ] || fail "loglik: no scores or choice: $line"
  best=$(tr ',' '\n' <<<"$scores" | awk 'NR == 1 || $1 > m { m = $1; i = NR } END { printf "%c", 64 + i }')
  [ "$best" = "$choice" ] || fail "loglik: choice $choice is not the best score ($scores)"
done < "$tmp/loglik.jsonl"
# the same questions in the same order score the same (greedy, no random draws)
"$omni" --log warn eval --model_path "$fixtures/janus_tiny" --data "$tmp/set.jsonl" --score loglik \
  --output "$tmp/loglik2.jsonl" > /dev/null
cmp -s "$tmp/loglik.jsonl" "$tmp/loglik2.jsonl" || fail "loglik: two runs differ"
# --limit: the first N
out=$("$omni" --log warn eval --model_path "$fixtures/janus_tiny" --data "$tmp/set.jsonl" --limit 1 --max_new_tokens 2)
grep -q "^accuracy: .* of 1; " <<<"$out" || fail "--limit 1: $out"

# bad input: one line each, before the model loads
echo '{"id": "x", "image": "../red_circle.png", "question": "?", "options": ["a", "b"], "answer": "A"}' > "$tmp/up.jsonl"
expect_error "up.jsonl:1: image '../red_circle.png': '..' is refused" \
  "$omni" eval --model_path "$fixtures/janus_tiny" --data "$tmp/up.jsonl"
echo '{"id": "x", "question": "?", "options": ["a", "b"], "answer": "C"}' > "$tmp/bad.jsonl"
expect_error "bad.jsonl:1: \"answer\" must be an option's letter" \
  "$omni" eval --model_path "$fixtures/janus_tiny" --data "$tmp/bad.jsonl"
expect_error "cannot open the evaluation file" "$omni" eval --model_path "$fixtures/janus_tiny" --data "$tmp/none.jsonl"
expect_error "--score: must be generate or loglik" \
  "$omni" eval --model_path "$fixtures/janus_tiny" --data "$tmp/set.jsonl" --score vibes
expect_error "model directory not found" "$omni" eval --model_path "$tmp/nothing" --data "$tmp/set.jsonl"
expect_error "the output directory does not exist" \
  "$omni" eval --model_path "$fixtures/janus_tiny" --data "$tmp/set.jsonl" --output "$tmp/no/such/p.jsonl"
# the predictions may not replace the question file, an image or a device; a failed write leaves
# no file behind and keeps the one that was there
cp "$tmp/set.jsonl" "$tmp/keep.jsonl"
expect_error "is one of this run's inputs" \
  "$omni" eval --model_path "$fixtures/janus_tiny" --data "$tmp/set.jsonl" --output "$tmp/set.jsonl"
cmp -s "$tmp/set.jsonl" "$tmp/keep.jsonl" || fail "--output = --data changed the question file"
expect_error "is one of this run's inputs" \
  "$omni" eval --model_path "$fixtures/janus_tiny" --data "$tmp/set.jsonl" --output "$tmp/red_circle.png"
expect_error "is not a regular file" \
  "$omni" eval --model_path "$fixtures/janus_tiny" --data "$tmp/set.jsonl" --output /dev/full
echo "old predictions" > "$tmp/kept.jsonl"
expect_error "kept.jsonl: write failed" bash -c "trap '' XFSZ; ulimit -f 0; exec \"\$@\"" _ \
  "$omni" --log warn eval --model_path "$fixtures/janus_tiny" --data "$tmp/set.jsonl" --max_new_tokens 2 \
  --output "$tmp/kept.jsonl"
[ "$(cat "$tmp/kept.jsonl")" = "old predictions" ] || fail "a failed predictions write replaced the old file"
[ ! -e "$tmp/kept.jsonl.tmp" ] || fail "a failed predictions write left its temporary"
echo "eval: all checks passed"
