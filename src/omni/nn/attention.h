// Scaled dot-product attention, the one implementation every layer uses (the Llama decoder, the
// MoT decoder's packed blocks, SigLIP / NaViT encoders, the VQ / FLUX mid-block).
//   q [B, H, Tq, D]; k, v [B, kvH, S, D] with H a multiple of kvH (grouped-query attention:
//   query head h reads kv head h / (H / kvH), without materialising repeated keys)
//   -> [B, H, Tq, D] in q's dtype; softmax in float32.
// On libtorch >= 2.1 the fused at::scaled_dot_product_attention runs where it computes the same
// thing (no grouped heads on the CPU, where repeating the cache would cost more than it saves).
// Otherwise queries are processed in chunks so the score block stays under max_score_bytes
// (a 1024² FLUX decode would otherwise build a 1 GiB score matrix).
#pragma once
#include <torch/torch.h>

namespace omni::nn {

struct AttentionOptions {
  double scale = 0;     // <= 0: 1 / sqrt(D)
  bool causal = false;  // bottom-right aligned: query i of Tq sees keys [0, S - Tq + i] (a KV cache's past)
  // Additive float mask (0 = attend, -inf or finfo.min = blocked), [Tq, S], [B|1, Tq, S] or
  // [B|1, 1, Tq, S]; used instead of `causal`.
  torch::Tensor mask;
  int64_t max_score_bytes = int64_t{128} << 20;
};

torch::Tensor attention(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v,
                        const AttentionOptions& o = {});

}  // namespace omni::nn
