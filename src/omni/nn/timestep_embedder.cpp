#include "omni/nn/timestep_embedder.h"

#include <cmath>

namespace omni::nn {

TimestepEmbedderImpl::TimestepEmbedderImpl(int64_t hidden, int64_t freq_dim_) : freq_dim(freq_dim_) {
  fc1 = torch::nn::Linear(freq_dim, hidden);
  fc2 = torch::nn::Linear(hidden, hidden);
  mlp = register_module("mlp", torch::nn::Sequential(fc1, torch::nn::SiLU(), fc2));
}

torch::Tensor TimestepEmbedderImpl::frequencies(const torch::Tensor& t, int64_t dim) {
  const int64_t half = dim / 2;
  // float32 as the official: exp(-ln(max_period) * arange(half, float32) / half)
  auto freqs = torch::exp(-std::log(10000.0) * torch::arange(0, half, torch::kFloat32) / static_cast<double>(half));
  auto args = t.to(torch::kFloat32).unsqueeze(1) * freqs.to(t.device()).unsqueeze(0);
  auto emb = torch::cat({torch::cos(args), torch::sin(args)}, -1);
  if (dim % 2) emb = torch::cat({emb, torch::zeros_like(emb.narrow(1, 0, 1))}, -1);
  return emb;
}

torch::Tensor TimestepEmbedderImpl::forward(const torch::Tensor& t) {
  return mlp->forward(frequencies(t, freq_dim).to(fc1->weight.scalar_type()));
}

}  // namespace omni::nn
