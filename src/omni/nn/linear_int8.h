// The few-row int8 linear kernel (--dtype int8 decode steps and CFG pairs on the CPU).
#pragma once
#include <torch/torch.h>

#include <vector>

namespace omni::nn {

// y_i = x @ (q_i * scale_i[:, None])^T (+ b_i) for int8 weights [O_i, K] (contiguous, on the CPU)
// and R = 1..4 fp32 rows of x [..., K], in one pass over all the weights' rows; no autograd
// graph is recorded. The caller checks the arguments (linear.cpp's few_rows).
std::vector<torch::Tensor> int8_rows(const torch::Tensor& x, const std::vector<torch::Tensor>& qs,
                                     const std::vector<torch::Tensor>& scales, const std::vector<torch::Tensor>& biases,
                                     int64_t R);

}  // namespace omni::nn
