// The one- and two-row bf16 linear kernel (decode steps and CFG pairs with --dtype bf16 on the CPU).
#pragma once
#include <torch/torch.h>

namespace omni::nn {

// y = x @ W^T (+ b) for bf16 x with 1 or 2 rows and a contiguous bf16 W [O, K] on the CPU, for
// callers without autograd (linear_rows checks grad mode; no graph is recorded here): each
// weight row is read once for all rows, products accumulated in fp32, bias added in fp32, one
// rounding to bf16 (what torch::linear computes for bf16, in another summation order). Uses
// AVX512-BF16 dot products where the CPU has them, else widens bf16 -> fp32 (AVX-512F / AVX2 /
// portable C++). Returns an undefined tensor when the arguments are outside that case.
torch::Tensor linear_bf16_rows(const torch::Tensor& x, const torch::Tensor& W, const torch::Tensor& bias);

}  // namespace omni::nn
