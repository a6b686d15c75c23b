#!/usr/bin/env bash
# omni inspect on the golden fixture folders, a file, --json, and bad inputs.
# usage: inspect.sh OMNI_BIN FIXTURES_DIR SOURCE_DIR
set -euo pipefail
omni=$1 fixtures=$2
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }

out=$("$omni" inspect "$fixtures/janus_tiny")
grep -q 'model_type: "multi_modality"' <<<"$out" || fail "janus model_type: $out"
grep -q 'tensors 416, parameters 2.87M' <<<"$out" || fail "janus tensor/param count: $out"
grep -q 'language_model:' <<<"$out" || fail "janus modules"
grep -q 'BF16×416' <<<"$out" || fail "janus dtypes"

out=$("$omni" inspect "$fixtures/bagel_tiny")
grep -q 'ema.safetensors' <<<"$out" || fail "bagel ema listed"
grep -q 'ae.safetensors' <<<"$out" || fail "bagel ae listed"

"$omni" inspect --json "$fixtures/janus_tiny/model.safetensors" > "$tmp/r.json"
grep -q '"tensors": 416' "$tmp/r.json" || fail "json tensors"
grep -q '"parameters": 2873691' "$tmp/r.json" || fail "json parameter count"

# Bad inputs: one 'error:' line, non-zero exit, no crash.
expect_error() {  # expect_error FRAGMENT CMD...
  local frag=$1; shift
  set +e; err=$("$@" 2>&1 >/dev/null); rc=$?; set -e
  [ $rc -ne 0 ] || fail "expected failure: $*"
  [ $rc -lt 128 ] || fail "crashed ($rc): $*"
  [ "$(wc -l <<<"$err")" -eq 1 ] || fail "expected one error line, got: $err"
  grep -q "^error: .*$frag" <<<"$err" || fail "expected '$frag' in: $err"
}
expect_error "no such file" "$omni" inspect "$tmp/missing.safetensors"
head -c 3000 "$fixtures/janus_tiny/model.safetensors" > "$tmp/cut.safetensors"
expect_error "cut.safetensors: " "$omni" inspect "$tmp/cut.safetensors"
printf 'garbage garbage garbage' > "$tmp/g.safetensors"
expect_error "g.safetensors" "$omni" inspect "$tmp/g.safetensors"
mkdir "$tmp/empty"
expect_error "no weights found" "$omni" inspect "$tmp/empty"
echo '{"model_type": ' > "$tmp/empty/config.json"
expect_error "invalid JSON" "$omni" inspect "$tmp/empty"
echo "inspect: all checks passed"
