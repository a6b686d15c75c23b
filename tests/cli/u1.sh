#!/usr/bin/env bash
# omni infer on the tiny SenseNova-U1 fixture from a fresh clone: every mode runs and writes what
# it should (the numbers are checked against the official outputs in test_u1_torch), and bad
# requests end with one error line.
# usage: u1.sh OMNI_BIN FIXTURES_DIR SOURCE_DIR
set -euo pipefail
omni=$1 fixtures=$2
m=$fixtures/u1_tiny
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
source "$(dirname "$0")/lib/common.sh"

# understand: model type detected from config.json (neo_chat); greedy = the official ids, whose
# tenth is <think> (decoded, not special)
out=$("$omni" infer --model_path "$m" --image "$m/und_image.png" \
      --prompt "Which shapes do you see, and where are they?" --max_new_tokens 10 2>/dev/null)
grep -q '<think>' <<<"$out" || fail "understand output: $out"

# generate with the official seed (its pixels are checked against the official PNG in
# test_u1_torch); --trace holds the named stages
"$omni" infer --model_type u1 --model_path "$m" --mode generate \
  --prompt "A green teapot on a striped tablecloth next to two lemons, soft morning light." \
  --width 192 --height 128 --steps 5 --seed 2026 --output "$tmp/t2i.png" --trace "$tmp/t2i.safetensors" 2>/dev/null >"$tmp/out"
[ -s "$tmp/t2i.png" ] || fail "no t2i png"
grep -q "$tmp/t2i.png" "$tmp/out" || fail "t2i path not printed"
for name in init_noise velocity_first decoded; do
  "$omni" inspect "$tmp/t2i.safetensors" | grep -q "$name" || fail "trace lacks $name"
done

# the same seed twice gives the same image; another seed another one
"$omni" infer --model_path "$m" --mode generate --prompt "a red square" --width 64 --height 64 --steps 2 \
  --seed 7 --output "$tmp/a.png" >/dev/null 2>&1
"$omni" infer --model_path "$m" --mode generate --prompt "a red square" --width 64 --height 64 --steps 2 \
  --seed 7 --output "$tmp/b.png" >/dev/null 2>&1
"$omni" infer --model_path "$m" --mode generate --prompt "a red square" --width 64 --height 64 --steps 2 \
  --seed 8 --output "$tmp/c.png" >/dev/null 2>&1
cmp -s "$tmp/a.png" "$tmp/b.png" || fail "same seed, different images"
! cmp -s "$tmp/a.png" "$tmp/c.png" || fail "different seeds, same image"

# think mode prints the plan, cfg_zero_star runs
out=$("$omni" infer --model_path "$m" --mode generate --prompt "A cat sleeping on a windowsill." --think \
      --width 128 --height 64 --steps 2 --cfg_norm cfg_zero_star --output "$tmp/think.png" 2>/dev/null | tr -d '\0')
[ -s "$tmp/think.png" ] || fail "no think png"
[ "$(wc -l <<<"$out")" -ge 2 ] || fail "think text not printed: $out"

# edit: two images without markers (Image-1:, Image-2:), default size from the first image
"$omni" infer --model_path "$m" --mode edit --image "$m/edit_image.png" --image "$m/und_image.png" \
  --prompt "Put the boat in the second picture." --steps 1 --width 64 --height 96 --cfg_img_scale 1.5 \
  --cfg_norm channel --output "$tmp/edit.png" >/dev/null 2>&1 || fail "edit with two images"
[ -s "$tmp/edit.png" ] || fail "no edit png"

# interleave: text (the tiny model never opens <img> here), bounded by --max_new_tokens
out=$("$omni" infer --model_path "$m" --mode interleave --prompt "Draw a cat, then describe it." \
      --max_new_tokens 5 --width 64 --height 64 --steps 1 --output "$tmp/il.png" 2>/dev/null | tr -d '\0')
[ -n "$out" ] || fail "interleave printed nothing"

# bad requests: one error line each
expect_error "cfg_norm" "$omni" infer --model_path "$m" --mode generate --prompt x --cfg_norm bogus --output "$tmp/x.png"
expect_error "cfg_zero_star is text-to-image only" "$omni" infer --model_path "$m" --mode edit --image "$m/edit_image.png" \
  --prompt x --cfg_norm cfg_zero_star --output "$tmp/x.png"
# the token size is the model's (config), so the size rule is checked once the config is read,
# after the load: its info lines are not part of the error
expect_error "multiples of 32" "$omni" --log warn infer --model_path "$m" --mode generate --prompt x --width 100 --height 64 \
  --output "$tmp/x.png"
expect_error "--width/--height: must be positive" "$omni" infer --model_path "$m" --mode generate --prompt x --width 0 \
  --height 64 --output "$tmp/x.png"
expect_error "give both" "$omni" infer --model_path "$m" --mode generate --prompt x --width 64 --output "$tmp/x.png"
expect_error "is 4000000 image tokens, more than the model's context of 32768" "$omni" --log warn infer --model_path "$m" \
  --mode generate --prompt x --width 64000 --height 64000 --output "$tmp/x.png"
expect_error "at least one input image" "$omni" infer --model_path "$m" --mode edit --prompt x --output "$tmp/x.png"
expect_error "takes no input image" "$omni" infer --model_path "$m" --mode generate --image "$m/und_image.png" --prompt x --output "$tmp/x.png"
expect_error "not taken by u1 --mode understand" "$omni" infer --model_path "$m" --prompt x --steps 3
expect_error "steps" "$omni" infer --model_path "$m" --mode generate --prompt x --steps 0 --output "$tmp/x.png"
# non-finite and out-of-range numbers are refused before the load (they drew all-NaN images)
expect_error "--cfg_text_scale inf: expected a finite number" "$omni" infer --model_path "$m" --mode generate --prompt x \
  --cfg_text_scale inf --output "$tmp/x.png"
expect_error "--timestep_shift: must be in" "$omni" infer --model_path "$m" --mode generate --prompt x \
  --timestep_shift 1e-30 --output "$tmp/x.png"
expect_error "--cfg_interval '0.4,1.0,2': expected two finite numbers" "$omni" infer --model_path "$m" --mode generate \
  --prompt x --cfg_interval 0.4,1.0,2 --output "$tmp/x.png"
expect_error "--t_eps 'nan': expected a finite number" "$omni" infer --model_path "$m" --mode generate --prompt x \
  --t_eps nan --output "$tmp/x.png"
expect_error "init_noise" "$omni" infer --model_path "$m" --mode generate --prompt x --width 64 --height 64 \
  --init_noise "$m/t2i.safetensors" --output "$tmp/x.png"

# configs this implementation refuses, named
mkdir "$tmp/u15"
cp "$m"/*.json "$m"/model.safetensors "$tmp/u15/"
sed -i 's/"use_pixel_head": false/"use_pixel_head": true/' "$tmp/u15/config.json"
expect_error "ConvDecoder" "$omni" infer --model_path "$tmp/u15" --prompt x --image "$m/und_image.png"
sed -i 's/"use_pixel_head": true/"use_pixel_head": false/; s/"model_type": "qwen3"/"model_type": "qwen3_moe"/' "$tmp/u15/config.json"
expect_error "Qwen3-MoE" "$omni" infer --model_path "$tmp/u15" --prompt x --image "$m/und_image.png"
echo "u1 cli ok"
