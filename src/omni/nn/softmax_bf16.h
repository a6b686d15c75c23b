// Softmax over the last dimension of a bf16 CPU tensor, in place: fp32 arithmetic and one rounding
// to bf16, as libtorch's bf16 softmax (and a GPU's) computes it, in one pass over the scores
// instead of libtorch 1.13's: its vectorised exp made the softmax the attention's largest
// non-GEMM cost (NaViT, 16 x 1369 x 1369 scores: 13.5 ms; 4900 patches: ~170 ms a layer).
// Internal to src/omni/nn (attention.cpp).
#pragma once
#include <ATen/ATen.h>

namespace omni::nn {

// Replaces each row of x (bf16, CPU, contiguous) by its softmax; false, untouched, where it does
// not apply (another dtype or device, not contiguous, or no AVX-512F on this CPU).
bool softmax_lastdim_bf16_(at::Tensor& x);

}  // namespace omni::nn
