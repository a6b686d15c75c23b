#!/usr/bin/env bash
# omni inspect on the golden fixture folders, a file, --json, and bad inputs.
# usage: inspect.sh OMNI_BIN FIXTURES_DIR SOURCE_DIR
set -euo pipefail
omni=$1 fixtures=$2
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
source "$(dirname "$0")/lib/common.sh"

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

# A sharded .bin checkpoint (torch.save files + pytorch_model.bin.index.json).
out=$("$omni" inspect "$fixtures/torch_bin/pytorch_model.bin.index.json")
grep -q 'tensors 4,' <<<"$out" || fail "sharded .bin tensor count: $out"
grep -q '(2 files)' <<<"$out" || fail "sharded .bin shard count: $out"
out=$("$omni" inspect "$fixtures/torch_bin/tiny.bin")
grep -q 'BF16' <<<"$out" || fail "tiny.bin dtypes: $out"

# A sharded safetensors checkpoint written here: two shards + index, in a model directory.
write_st() {  # write_st FILE NAME N: one F32 tensor [N] of zeros
  local hdr="{\"$2\":{\"dtype\":\"F32\",\"shape\":[$3],\"data_offsets\":[0,$(( $3 * 4 ))]}}"
  while [ $(( ${#hdr} % 8 )) -ne 0 ]; do hdr="$hdr "; done
  local n=${#hdr}
  printf "$(printf '\\x%02x' $((n & 255)) $(((n >> 8) & 255)) 0 0 0 0 0 0)" > "$1"
  printf '%s' "$hdr" >> "$1"
  head -c $(( $3 * 4 )) /dev/zero >> "$1"
}
mkdir "$tmp/sharded"
write_st "$tmp/sharded/model-00001-of-00002.safetensors" "enc.w" 6
write_st "$tmp/sharded/model-00002-of-00002.safetensors" "dec.w" 10
printf '%s' '{"metadata":{"total_size":64},"weight_map":{"enc.w":"model-00001-of-00002.safetensors","dec.w":"model-00002-of-00002.safetensors"}}' \
  > "$tmp/sharded/model.safetensors.index.json"
echo '{"model_type": "llama", "hidden_size": 8}' > "$tmp/sharded/config.json"
out=$("$omni" inspect "$tmp/sharded")
grep -q 'model_type: "llama"' <<<"$out" || fail "sharded model_type: $out"
grep -q 'tensors 2, parameters 16 (16)' <<<"$out" || fail "sharded counts: $out"
grep -q 'enc: 6' <<<"$out" || fail "sharded modules: $out"
rm "$tmp/sharded/model-00002-of-00002.safetensors"
expect_error "shard 'model-00002-of-00002.safetensors' is missing" "$omni" inspect "$tmp/sharded"

# Bad inputs: one 'error:' line, non-zero exit, no crash.
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
