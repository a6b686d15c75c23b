// Linear layers for the few-row case (decode steps, CFG pairs): OpenBLAS sgemm streams the
// weights at ~10 GB/s for 1-4 rows; linear_rows reads each weight once (AVX2+FMA when present).
// bf16 stays with libtorch: its oneDNN bf16 GEMM reads a 4096x12288 bf16 weight for one row at
// 20.9 GB/s on 2 cores (4.8 ms, against 8.7 ms for this loop in fp32), where widening loops of
// ours measured 12.3 GB/s (AVX2) and 19 GB/s (AVX-512, 5.3 ms; a U1 decode step 0.90 s against
// oneDNN's 0.73 s).
#pragma once
#include <torch/torch.h>

namespace omni::nn {

// == l->forward(x); takes the row loop for 1..4 rows of fp32 on the CPU without autograd.
torch::Tensor linear_rows(torch::nn::Linear l, const torch::Tensor& x);

}  // namespace omni::nn
