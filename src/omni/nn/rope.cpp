#include "omni/nn/rope.h"

#include "omni/core/error.h"

namespace omni::nn {

torch::Tensor rope_inv_freq(int64_t head_dim, double theta, torch::Device device) {
  check(head_dim > 0 && head_dim % 2 == 0, "rope", "head_dim must be even and positive, got " + std::to_string(head_dim));
  auto f32 = torch::TensorOptions().dtype(torch::kFloat32).device(device);
  // HF: 1.0 / (base ** (arange(0, dim, 2, int64).float() / dim)). `base ** t` is
  // tensor(base, float32) ** t; `1.0 / x` is x.reciprocal() * 1.0.
  auto exponent = torch::arange(0, head_dim, 2, torch::TensorOptions().dtype(torch::kInt64).device(device))
                      .to(torch::kFloat32) /
                  static_cast<double>(head_dim);
  auto base = torch::scalar_tensor(theta, f32);
  return torch::pow(base, exponent).reciprocal();
}

RopeCosSin rope_cos_sin(const torch::Tensor& inv_freq, const torch::Tensor& positions, torch::ScalarType dtype) {
  auto pos = positions.dim() == 1 ? positions.unsqueeze(0) : positions;  // [B, T]
  // [B, T, 1] * [1, 1, D/2]: a single float32 product per element, bit-equal to HF's K=1 matmul.
  auto freqs = pos.to(torch::kFloat32).unsqueeze(-1) * inv_freq.to(torch::kFloat32).view({1, 1, -1});
  auto emb = torch::cat({freqs, freqs}, -1);
  RopeCosSin out{emb.cos(), emb.sin()};
  if (dtype != torch::kFloat32) {
    out.cos = out.cos.to(dtype);
    out.sin = out.sin.to(dtype);
  }
  return out;
}

torch::Tensor rotate_half(const torch::Tensor& x) {
  const int64_t half = x.size(-1) / 2;
  auto x1 = x.narrow(-1, 0, half);
  auto x2 = x.narrow(-1, half, x.size(-1) - half);
  return torch::cat({-x2, x1}, -1);
}

torch::Tensor apply_rope(const torch::Tensor& x, const RopeCosSin& cs) {
  auto cos = cs.cos.unsqueeze(1);  // [B, 1, T, D]
  auto sin = cs.sin.unsqueeze(1);
  return x * cos + rotate_half(x) * sin;
}

}  // namespace omni::nn
