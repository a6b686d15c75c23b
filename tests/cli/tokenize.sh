#!/usr/bin/env bash
# CLI test for `omni tokenize`: encode, --no-special, --jsonl, --decode, --skip-special and errors,
# against the HF reference ids in tests/fixtures/tokenizer/*.expected.jsonl.
# Usage: bash tokenize.sh <omni-binary> <fixtures-dir> <source-dir>
set -euo pipefail
omni="$1"
fixtures="$2"
src="$3"
qwen="$src/third_party/tokenizers/qwen3.json"
janus="$fixtures/janus_tiny/tokenizer.json"
corpus="$fixtures/tokenizer/corpus.jsonl"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

fail() { echo "FAIL: $*" >&2; exit 1; }
expect_eq() { [ "$1" == "$2" ] || fail "$3: got '$1', want '$2'"; }
# expect_error NAME PATTERN CMD...: CMD must exit non-zero and print an "error: ...PATTERN" line.
expect_error() {
  local name="$1" pattern="$2" rc=0
  shift 2
  "$@" >"$tmp/out" 2>"$tmp/err" || rc=$?
  [ "$rc" -ne 0 ] || fail "$name: exit status 0"
  grep -q "^error: .*$pattern" "$tmp/err" || fail "$name: no 'error: ...$pattern' line in: $(cat "$tmp/err")"
}
# Field of an expected.jsonl row as space-separated ids.
ids_of() { sed -E "s/.*\"$1\":\[([^]]*)\].*/\1/; s/,/ /g" "$2"; }

[ -s "$qwen" ] || fail "missing $qwen (run scripts/fetch_tokenizers.sh)"

# Encode: all of stdin, one line of ids.
expect_eq "$(printf 'Hello, world!' | "$omni" tokenize --tokenizer "$qwen")" "9707 11 1879 0" "encode"
expect_eq "$(printf 'Hello, world!\n' | "$omni" tokenize --tokenizer "$qwen")" "9707 11 1879 4894" "encode newline"
expect_eq "$(printf '<|im_start|>user' | "$omni" tokenize --tokenizer "$qwen")" "151644 872" "special token"
expect_eq "$(printf '' | "$omni" tokenize --tokenizer "$qwen")" "" "empty input"
# Janus' template adds BOS (id 1); --no-special leaves it out. A directory works as --tokenizer.
expect_eq "$(printf 'hi' | "$omni" tokenize --tokenizer "$janus")" "1 120 121" "add special"
expect_eq "$(printf 'hi' | "$omni" tokenize --tokenizer "$fixtures/janus_tiny" --no-special)" "120 121" "--no-special"
# Invalid UTF-8: each maximal invalid sequence encodes as U+FFFD (bytes 0xEF 0xBF 0xBD).
expect_eq "$(printf 'a\xffb' | "$omni" tokenize --tokenizer "$qwen")" \
          "$(printf 'a\xef\xbf\xbdb' | "$omni" tokenize --tokenizer "$qwen")" "invalid UTF-8"

# --jsonl over the whole corpus equals HF's ids, with and without special tokens.
for name in qwen3 janus_tiny; do
  file="$qwen"
  [ "$name" == janus_tiny ] && file="$janus"
  expected="$fixtures/tokenizer/$name.expected.jsonl"
  "$omni" tokenize --tokenizer "$file" --jsonl <"$corpus" >"$tmp/with.txt"
  ids_of with_special "$expected" >"$tmp/want_with.txt"
  cmp -s "$tmp/with.txt" "$tmp/want_with.txt" || fail "--jsonl $name: $(diff "$tmp/with.txt" "$tmp/want_with.txt" | head -5)"
  "$omni" tokenize --tokenizer "$file" --jsonl --no-special <"$corpus" >"$tmp/without.txt"
  ids_of no_special "$expected" >"$tmp/want_without.txt"
  cmp -s "$tmp/without.txt" "$tmp/want_without.txt" || fail "--jsonl --no-special $name"
  [ "$(wc -l <"$tmp/with.txt")" -eq "$(wc -l <"$corpus")" ] || fail "--jsonl $name: line count"
done

# Decode: ids in, the text out exactly (no newline added), so encode | decode gives stdin back.
expect_eq "$(echo "9707 11 1879 0" | "$omni" tokenize --tokenizer "$qwen" --decode)" "Hello, world!" "decode"
printf 'line one\n\tindented  \r\n\xe4\xbd\xa0\xe5\xa5\xbd \xf0\x9f\x98\x80\n\n' >"$tmp/text.txt"
"$omni" tokenize --tokenizer "$qwen" <"$tmp/text.txt" | "$omni" tokenize --tokenizer "$qwen" --decode >"$tmp/round.txt"
cmp -s "$tmp/text.txt" "$tmp/round.txt" || fail "encode | decode round trip"
expect_eq "$(echo "1 120 121" | "$omni" tokenize --tokenizer "$janus" --decode)" \
          "<｜begin▁of▁sentence｜>hi" "decode keeps special tokens"
expect_eq "$(echo "1 120 121" | "$omni" tokenize --tokenizer "$janus" --decode --skip-special)" "hi" "--skip-special"
expect_eq "$(printf '9707 11\n\n1879 0\n' | "$omni" tokenize --tokenizer "$qwen" --decode --jsonl)" \
          "$(printf '"Hello,"\n""\n" world!"')" "decode --jsonl"

# Errors: exit status non-zero and one "error:" line.
expect_error "missing file" "/nonexistent/tokenizer.json" "$omni" tokenize --tokenizer /nonexistent/tokenizer.json </dev/null
mkfifo "$tmp/fifo"  # a pipe or device is refused, not read forever
expect_error "fifo" "fifo: not a regular file" timeout 60 "$omni" tokenize --tokenizer "$tmp/fifo" </dev/null
printf '{"model": ' >"$tmp/bad.json"
expect_error "bad JSON" "bad.json: invalid JSON" "$omni" tokenize --tokenizer "$tmp/bad.json" </dev/null
printf '{"model": {"type": "BPE", "vocab": {}, "merges": []}, "pre_tokenizer": {"type": "Bogus"}}' >"$tmp/bogus.json"
expect_error "unknown pre-tokenizer" '"Bogus"' "$omni" tokenize --tokenizer "$tmp/bogus.json" </dev/null
printf '"ok"\nnot json\n' >"$tmp/bad.jsonl"
expect_error "malformed jsonl line" "stdin line 2: " "$omni" tokenize --tokenizer "$qwen" --jsonl <"$tmp/bad.jsonl"
printf '"ok"\n42\n' >"$tmp/num.jsonl"
expect_error "non-string jsonl line" "stdin line 2: expected a JSON string" "$omni" tokenize --tokenizer "$qwen" --jsonl <"$tmp/num.jsonl"
echo "12 abc" >"$tmp/ids.txt"
expect_error "bad id" '"abc" is not a token id' "$omni" tokenize --tokenizer "$qwen" --decode <"$tmp/ids.txt"
echo "999999999" >"$tmp/ids.txt"
expect_error "unknown id" "id 999999999 is not in the vocabulary" "$omni" tokenize --tokenizer "$qwen" --decode <"$tmp/ids.txt"

echo "tokenize CLI: all checks passed"
