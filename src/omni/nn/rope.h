// Rotary position embedding, computed exactly as Hugging Face's default ("rope_type": "default")
// LlamaRotaryEmbedding does it, all in float32:
//   inv_freq[i] = 1 / theta^(float32(2i) / d)          (float32 pow, then reciprocal)
//   angle[t, i] = float32(position[t]) * inv_freq[i]    (one float32 product, as HF's K=1 matmul)
//   cos/sin     = cos/sin(cat(angle, angle))            (float32), cast to the activation dtype
//   x'          = x * cos + rotate_half(x) * sin,  rotate_half(x) = cat(-x[d/2:], x[:d/2])
#pragma once
#include <torch/torch.h>

namespace omni::nn {

// float32 [head_dim / 2] on `device`.
torch::Tensor rope_inv_freq(int64_t head_dim, double theta, torch::Device device = torch::kCPU);

struct RopeCosSin {
  torch::Tensor cos, sin;  // [B, T, head_dim] (B = 1 when positions are 1-D), in `dtype`
};

// positions: int64 [T] or [B, T].
RopeCosSin rope_cos_sin(const torch::Tensor& inv_freq, const torch::Tensor& positions,
                        torch::ScalarType dtype = torch::kFloat32);

torch::Tensor rotate_half(const torch::Tensor& x);

// x: [B, H, T, D]; cos/sin: [B, T, D] (broadcast over heads).
torch::Tensor apply_rope(const torch::Tensor& x, const RopeCosSin& cs);

// apply_rope in one pass, for inference on the CPU (under c10::InferenceMode), fp32 or bf16 with
// cos/sin of x's dtype: bit-equal to the op chain (each product and sum rounded to x's dtype as
// its kernels round them), without its six kernels and five temporaries per call (~50 us of the
// ~250 us outside the linears of a Janus-1B decode layer, q and k of a CFG pair). Undefined where
// it does not apply (autograd, another device or dtype, a broadcast that would grow x, a last dim
// that is not contiguous); apply_rope then runs the chain.
torch::Tensor apply_rope_rows(const torch::Tensor& x, const RopeCosSin& cs);

}  // namespace omni::nn
