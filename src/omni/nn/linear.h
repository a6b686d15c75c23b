// Linear layers for the few-row case (decode steps, CFG pairs): OpenBLAS sgemm streams the
// weights at ~10 GB/s for 1-4 rows; linear_rows reads each weight once (AVX2+FMA when present).
#pragma once
#include <torch/torch.h>

namespace omni::nn {

// == l->forward(x); takes the row loop for 1..4 rows of fp32 on the CPU without autograd.
torch::Tensor linear_rows(torch::nn::Linear l, const torch::Tensor& x);

}  // namespace omni::nn
