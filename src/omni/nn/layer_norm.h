// LayerNorm forward for every dtype the engine runs in.
#pragma once
#include <torch/torch.h>

#include "omni/nn/elementwise_cpu.h"

namespace omni::nn {

// == ln->forward(x), except that a bf16 / fp16 x on the CPU is normalised in fp32 and rounded
// once at the end: what the official bf16 code computes on a GPU (float accumulation, one
// rounding), and ~9x faster than libtorch 1.13's CPU bf16 kernel (576 x 1024, 2 threads:
// 0.24 against 2.09 ms, ~10% of a bf16 SigLIP-L forward). In inference a bf16 x takes one fused
// pass (elementwise_cpu.h: 4900 x 1152, 4.8 -> ~1 ms). `ln` by value: a shared handle, and
// forward() is not const.
inline torch::Tensor layer_norm(torch::nn::LayerNorm ln, const torch::Tensor& x) {
  const auto dt = x.scalar_type();
  if (!x.device().is_cpu() || (dt != torch::kBFloat16 && dt != torch::kHalf)) return ln->forward(x);
  const auto& o = ln->options;
  torch::Tensor fused;
  if (o.normalized_shape().size() == 1 && layer_norm_rows(x, ln->weight, ln->bias, o.eps(), fused)) return fused;
  const auto f32 = [](const torch::Tensor& t) { return t.defined() ? t.to(torch::kFloat32) : t; };
  return torch::layer_norm(x.to(torch::kFloat32), o.normalized_shape(), f32(ln->weight), f32(ln->bias), o.eps())
      .to(dt);
}

}  // namespace omni::nn
