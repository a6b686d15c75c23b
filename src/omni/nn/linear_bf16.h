// The one- and two-row bf16 linear kernel (decode steps and CFG pairs with --dtype bf16 on the CPU).
#pragma once
#include <torch/torch.h>

namespace omni::nn {

constexpr int64_t kBf16PairedRowsMax = 8;

// y = x @ W^T (+ b) for x with 1 or 2 rows and a contiguous bf16 W [O, K] on the CPU, for
// callers without autograd (linear.cpp's few_rows checks; no graph is recorded here): each
// weight row is read once for all rows, products accumulated in fp32, bias added in fp32.
// 3..kBf16PairedRowsMax rows (Janus CFG pairs of --parallel_size 2..4) take one such pass per
// pair of rows where x is fp32 or the CPU has no bf16 GEMM kernels (cpu_bf16.h); else these
// return an undefined / empty result for more than 2 rows.
// - bf16 x: one rounding to bf16 at the end (what torch::linear computes for bf16, in another
//   summation order); AVX512-BF16 dot products where the CPU has them, else the weights and x
//   widened to fp32 (AVX-512F / AVX2 / portable C++).
// - fp32 x (a bf16 head under fp32 compute, --dtype int8): the weights widened, x used as is, y
//   fp32 (== x @ W.float()^T up to summation order).
// Returns an undefined tensor when the arguments are outside these cases.
torch::Tensor linear_bf16_rows(const torch::Tensor& x, const torch::Tensor& W, const torch::Tensor& bias);
// The same for several weights of one K on the same x (linear_rows_shared), in one pass; empty
// when the arguments are outside these cases.
std::vector<torch::Tensor> linear_bf16_rows_shared(const torch::Tensor& x, const std::vector<torch::Tensor>& Ws,
                                                   const std::vector<torch::Tensor>& biases);

}  // namespace omni::nn
