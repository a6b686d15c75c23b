#!/usr/bin/env bash
# The GPU check, one prepared run on a machine with CUDA and a PyTorch install:
#   1. configure + build against the libtorch inside that PyTorch (build-gpu/),
#   2. the whole ctest suite (CPU alignment, unchanged tolerances),
#   3. the CUDA comparisons: every family and mode run with --device cuda in fp32 and bf16,
#      traced intermediates against the CPU fp32 run (tests CliBf16.* with OMNI_TEST_DEVICE=cuda),
#   4. bench_janus and bench_bagel on cuda in fp32 and bf16 (--quick unless OMNI_GPU_FULL=1).
# Usage: scripts/gpu_check.sh [build-dir]   (prints everything; exit status = first failure)
set -euo pipefail
cd "$(dirname "$0")/.."
B="${1:-build-gpu}"
PREFIX=$(python3 -c 'import torch;print(torch.utils.cmake_prefix_path)')
python3 -c 'import torch;print("torch", torch.__version__, "cuda", torch.version.cuda, "gpus", torch.cuda.device_count())'
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader || true
cmake -S . -B "$B" -DCMAKE_BUILD_TYPE=Release -DCMAKE_PREFIX_PATH="$PREFIX" >/dev/null
cmake --build "$B" -j"$(nproc)" 2>&1 | tail -n 3
(cd "$B" && ctest --output-on-failure -j4 2>&1 | tail -n 15)
OMNI_TEST_DEVICE=cuda "$B/tests/omni_torch_tests" --gtest_filter='CliBf16.*'
Q="--quick"; [ "${OMNI_GPU_FULL:-0}" = "1" ] && Q=""
for dt in fp32 bf16; do
  "$B/bench/bench_janus" --device cuda --dtype "$dt" $Q
  "$B/bench/bench_bagel" --device cuda --dtype "$dt" $Q
done
