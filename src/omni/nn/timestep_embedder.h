// DiT's TimestepEmbedder as BAGEL and SenseNova-U1 use it, with t in [0, 1] (not x1000):
//   mlp(cat(cos(t f), sin(t f))), f_k = exp(-ln(10000) k / (dim / 2)) in float32,
//   mlp = Linear(dim, C), SiLU, Linear(C, C)   (checkpoint names mlp.0, mlp.2)
// The frequencies are float32 (as the official code); the MLP runs in the module's dtype.
#pragma once
#include <torch/torch.h>

namespace omni::nn {

class TimestepEmbedderImpl : public torch::nn::Module {
 public:
  explicit TimestepEmbedderImpl(int64_t hidden, int64_t freq_dim = 256);
  static torch::Tensor frequencies(const torch::Tensor& t, int64_t dim);  // t float [N] -> [N, dim]
  torch::Tensor forward(const torch::Tensor& t);                          // [N] -> [N, C]
  torch::nn::Sequential mlp{nullptr};
  torch::nn::Linear fc1{nullptr}, fc2{nullptr};
  int64_t freq_dim;
};
TORCH_MODULE(TimestepEmbedder);

}  // namespace omni::nn
