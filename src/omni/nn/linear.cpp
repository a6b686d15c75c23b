// The few-row fp32 linear kernel (decode steps, CFG pairs): reads each weight row once for 1..4
// input rows (row_kernel.h: AVX-512 or AVX2+FMA when present). See linear.h.
#include "omni/nn/linear.h"

#include "omni/nn/linear_bf16.h"
#include "omni/nn/row_kernel.h"

namespace omni::nn {

// ---------------------------------------------------------------------------------------------
// Few-row fp32 linear (decode steps, CFG pairs): y[r, o] = <x[r], W[o]> (+ b[o]) streaming W once.
// For M = 1..4 rows OpenBLAS 0.3.21's sgemm (what torch::linear calls) packs the weight and streams
// it at ~10 GB/s on a 2-core box whose memory reads at ~30 GB/s; this loop, parallel over output
// rows, streams it at ~20 GB/s (Janus-Pro-1B decode and CFG steps: ~2x faster). Summation order
// differs from BLAS, so results differ by float rounding (~1e-6 relative).
namespace {
// fp32 weights and activations for row_kernel: loads as they are, the bias added afterwards.
struct Fp32Rows {
  using W = float;
  using A = float;
  const float* x;
  const float* w;
  int64_t K, O;
  float* y;
  static constexpr int kAvx512Rows = 8;
  static float wide(float v) { return v; }
#if defined(__GNUC__) && defined(__x86_64__)
  __attribute__((target("avx2"), always_inline)) static __m256 w8(const float* p) { return _mm256_loadu_ps(p); }
  __attribute__((target("avx2"), always_inline)) static __m256 x8(const float* p) { return _mm256_loadu_ps(p); }
  __attribute__((target("avx512f"), always_inline)) static __m512 w16(const float* p) { return _mm512_loadu_ps(p); }
  __attribute__((target("avx512f"), always_inline)) static __m512 x16(const float* p) { return _mm512_loadu_ps(p); }
#endif
  void put(int r, int64_t o, float dot) const { y[r * O + o] = dot; }
};

// y_i = x @ W_i^T (+ b_i) for fp32 weights of x's width, in one pass (row_kernel::run_many).
std::vector<torch::Tensor> fp32_rows(const torch::Tensor& x, const std::vector<torch::Tensor>& Ws,
                                     const std::vector<torch::Tensor>& biases, int64_t R) {
  auto xc = x.contiguous();
  std::vector<torch::Tensor> ys;
  std::vector<Fp32Rows> ps;
  for (const auto& W : Ws) {
    auto sizes = x.sizes().vec();
    sizes.back() = W.size(0);
    ys.push_back(torch::empty(sizes, x.options()));
    ps.push_back(Fp32Rows{xc.data_ptr<float>(), W.data_ptr<float>(), W.size(1), W.size(0), ys.back().data_ptr<float>()});
  }
  row_kernel::run_many(ps.data(), ps.size(), R);
  for (size_t i = 0; i < ys.size(); ++i)
    if (biases[i].defined()) ys[i].add_(biases[i]);
  return ys;
}
}  // namespace

// linear_rows(l, x) == l->forward(x), through the loop above when x has 1..4 rows of fp32 on the
// CPU with grad mode off (inference only: autograd is bypassed); bf16 weights and rows through
// linear_bf16_rows, int8 weights through linear_int8, weights narrower than x through
// linear_bf16_rows (1..2 rows) or linear_widened.
torch::Tensor linear_rows(torch::nn::Linear l, const torch::Tensor& x) {
  return linear_rows(x, l->weight, int8_scale(*l), l->bias);
}

torch::Tensor linear_rows(const torch::Tensor& x, const torch::Tensor& W, const torch::Tensor& scale,
                          const torch::Tensor& bias) {
  if (W.scalar_type() == torch::kChar) return linear_int8(x, W, scale, bias);
  if (W.scalar_type() != x.scalar_type()) {
    if (!torch::GradMode::is_enabled()) {
      auto y = linear_bf16_rows(x, W, bias);  // bf16 W, fp32 x: 1..2 rows
      if (y.defined()) return y;
    }
    return linear_widened(x, W, {}, bias);
  }
  if (W.scalar_type() == torch::kBFloat16 && !torch::GradMode::is_enabled()) {
    auto y = linear_bf16_rows(x, W, bias);  // undefined outside its 1..2-row CPU case
    if (y.defined()) return y;
  }
  const int64_t K = W.size(1);
  const int64_t R = x.dim() >= 1 && x.size(-1) == K ? x.numel() / K : 0;
  if (R < 1 || R > 4 || torch::GradMode::is_enabled() || !x.device().is_cpu() || x.scalar_type() != torch::kFloat32 ||
      W.scalar_type() != torch::kFloat32 || !W.is_contiguous())
    return torch::nn::functional::linear(x, W, bias);  // what Linear::forward calls (not at::linear)
  return fp32_rows(x, {W}, {bias}, R)[0];
}

std::vector<torch::Tensor> linear_rows_shared(const torch::Tensor& x, const std::vector<torch::nn::Linear>& ls) {
  std::vector<torch::Tensor> ys;
  if (ls.size() > 1 && !torch::GradMode::is_enabled() && !x.requires_grad() && x.device().is_cpu() && x.dim() >= 1) {
    const auto& W0 = ls[0]->weight;
    const int64_t K = W0.dim() == 2 ? W0.size(1) : -1;
    std::vector<torch::Tensor> Ws, biases;
    bool alike = K > 0;  // one dtype, one K, contiguous on the CPU: one range of rows
    for (const auto& l : ls) {
      const auto& W = l->weight;
      alike = alike && W.scalar_type() == W0.scalar_type() && W.dim() == 2 && W.size(1) == K && W.is_contiguous() &&
              W.device().is_cpu();
      Ws.push_back(W);
      biases.push_back(l->bias);
    }
    const int64_t R = alike && x.size(-1) == K ? x.numel() / K : 0;
    const auto wt = W0.scalar_type(), xt = x.scalar_type();
    if (R >= 1 && R <= 4 && xt == torch::kFloat32 && wt == torch::kFloat32) ys = fp32_rows(x, Ws, biases, R);
    else if (R >= 1 && R <= 4 && xt == torch::kFloat32 && wt == torch::kChar) ys = linear_int8_rows_shared(x, ls);
    else if (R >= 1 && wt == torch::kBFloat16) ys = linear_bf16_rows_shared(x, Ws, biases);  // empty outside 1..2 rows
  }
  if (ys.empty())
    for (const auto& l : ls) ys.push_back(linear_rows(l, x));
  return ys;
}

}  // namespace omni::nn
