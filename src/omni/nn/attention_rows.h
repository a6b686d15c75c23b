// Attention for a few query rows over a long key/value cache (decode steps, CFG image tokens).
#pragma once
#include <torch/torch.h>

namespace omni::nn {

// attention() for q [B, H, Tq <= 8, D] over k, v [B, kvH, S, D] on the CPU, fp32 or bf16 (also fp32
// q over a bf16 cache), without autograd: one pass over each kv head's keys and values for all of
// its query rows (G = H / kvH heads x Tq), scores, softmax and the weighted sum in fp32, the output
// rounded once to q's dtype.
// k and v may be views of a longer cache (rows of D contiguous elements; any batch/head strides),
// so nothing is copied. `mask` (additive, [B|1, 1, Tq, S] float) or `causal` (bottom-right: query
// t sees keys [0, S - Tq + t]) as attention(). Returns an undefined tensor outside that case.
//
// Why: torch::matmul against a cache view copies the keys to a contiguous block first (bf16: 5.7 ms
// of a 24.5 ms Janus-Pro-7B layer step for a CFG pair), and OpenBLAS runs the fp32 batched
// matrix-vector products one head at a time (7.5 ms of a 47 ms layer step).
torch::Tensor attention_rows(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v, double scale,
                             bool causal, const torch::Tensor& mask);

}  // namespace omni::nn
