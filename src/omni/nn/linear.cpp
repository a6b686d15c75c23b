// The few-row fp32 linear kernel (decode steps, CFG pairs): reads each weight row once for 1..4
// input rows (row_kernel.h: AVX-512 or AVX2+FMA when present). See linear.h.
#include "omni/nn/linear.h"

#include "omni/core/memory.h"
#include "omni/nn/cpu_bf16.h"
#include "omni/nn/linear_bf16.h"
#include "omni/nn/linear_int8.h"
#include "omni/nn/linear_onednn.h"
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
  static constexpr int kAvx512Rows = 4, kAvx512RowsMany = 4;  // row_kernel.h piece_length
  static constexpr int64_t kPrefetchBytes = 1024;             // row_kernel.h tile_avx512
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
  auto ys = row_kernel::run_weights<Fp32Rows>(x, Ws, R, [&](size_t i, const torch::Tensor& xc, const torch::Tensor& y) {
    return Fp32Rows{xc.data_ptr<float>(), Ws[i].data_ptr<float>(), Ws[i].size(1), Ws[i].size(0), y.data_ptr<float>()};
  });
  for (size_t i = 0; i < ys.size(); ++i)
    if (biases[i].defined()) ys[i].add_(biases[i]);
  return ys;
}

// y_i = x @ (W_i [* scale_i])^T (+ b_i) through the few-row kernel of the weights' dtype, all
// weights in one pass, where one takes these arguments; empty otherwise. The one place that decides:
// no autograd graph wanted; x on the CPU; the weights of one dtype and width K, contiguous on the
// CPU; fp32 W: 1..4 fp32 rows; int8 W (with fp32 scales): 1..4 fp32 rows; bf16 W: 1..2 rows of
// bf16 or fp32, up to 8 in passes of two rows (linear_bf16.h).
std::vector<torch::Tensor> few_rows(const torch::Tensor& x, const std::vector<torch::Tensor>& Ws,
                                    const std::vector<torch::Tensor>& scales, const std::vector<torch::Tensor>& biases) {
  if (Ws.empty() || !x.device().is_cpu() || x.dim() < 1 || Ws[0].dim() != 2) return {};
  const auto wt = Ws[0].scalar_type(), xt = x.scalar_type();
  const int64_t K = Ws[0].size(1);
  bool autograd = torch::GradMode::is_enabled() && x.requires_grad();
  for (size_t i = 0; i < Ws.size(); ++i) {
    const auto& W = Ws[i];
    if (W.dim() != 2 || W.size(1) != K || W.scalar_type() != wt || !W.is_contiguous() || !W.device().is_cpu()) return {};
    if (wt == torch::kChar && !(scales[i].defined() && scales[i].scalar_type() == torch::kFloat32)) return {};
    autograd = autograd || (torch::GradMode::is_enabled() && W.requires_grad());
  }
  const int64_t R = x.size(-1) == K ? x.numel() / K : 0;
  if (autograd || R < 1) return {};
  if (wt == torch::kBFloat16) return linear_bf16_rows_shared(x, Ws, biases);  // empty past 2 or 8 rows
  if (R > 4 || xt != torch::kFloat32) return {};
  if (wt == torch::kFloat32) return fp32_rows(x, Ws, biases, R);
  if (wt == torch::kChar) return int8_rows(x, Ws, scales, biases, R);
  return {};
}

// oneDNN's bf16 GEMM (libtorch 1.13's CPU bf16 linear) runs 10-35% slower at some row counts than
// at a few rows more: M = 1369 (37^2, BAGEL's 518^2 ViT), 577, 578 and 2345 against M rounded up to
// a multiple of 16 (2 threads, K/N = 1152/4304, best of 5: 1369 rows 37-49 ms, 1376 rows 33-36),
// one thread alike; its row blocking seems to follow M's divisors. Rounding M up to a multiple
// of 16 measured within +-3% elsewhere (600 to 4900 rows) and adds at most 15 rows, so from 512
// rows bf16 inference linears run on zero-padded rows and return the first M of them (a
// contiguous view); the padding rows never touch the real ones. Undefined where it does not apply.
constexpr int64_t kPadRowsFrom = 512, kRowMultiple = 16;
constexpr int64_t kBlockedRowsBelow = 512;  // fp32 GEMMs of fewer rows run in blocks (linear_rows)
torch::Tensor bf16_linear_padded_rows(const torch::Tensor& x, const torch::Tensor& W, const torch::Tensor& bias) {
  if (x.scalar_type() != torch::kBFloat16 || W.scalar_type() != torch::kBFloat16 || !x.device().is_cpu() ||
      torch::GradMode::is_enabled() || x.dim() < 2 || W.dim() != 2 || x.size(-1) != W.size(1))
    return {};
  const int64_t K = W.size(1), M = x.numel() / std::max<int64_t>(1, K);
  const int64_t Mp = (M + kRowMultiple - 1) / kRowMultiple * kRowMultiple;
  if (M < kPadRowsFrom || Mp == M) return {};
  auto xp = torch::empty({Mp, K}, x.options());
  xp.narrow(0, 0, M).copy_(x.reshape({M, K}));
  xp.narrow(0, M, Mp - M).zero_();
  auto sizes = x.sizes().vec();
  sizes.back() = W.size(0);
  return torch::nn::functional::linear(xp, W, bias).narrow(0, 0, M).view(sizes);
}
}  // namespace

// linear_rows(l, x) == l->forward(x): a few-row kernel where few_rows takes the arguments, else
// the block-widened GEMM for a weight narrower than x (int8, or a bf16 head under fp32 compute),
// else for bf16 inference oneDNN with the weight packed (from 1024 rows, linear_onednn.h) or
// torch's linear on rows padded to a multiple of 16.
torch::Tensor linear_rows(torch::nn::Linear l, const torch::Tensor& x) {
  return linear_rows(x, l->weight, int8_scale(*l), l->bias);
}

torch::Tensor linear_rows(const torch::Tensor& x, const torch::Tensor& W, const torch::Tensor& scale,
                          const torch::Tensor& bias) {
  auto ys = few_rows(x, {W}, {scale}, {bias});
  if (!ys.empty()) return ys[0];
  if (W.scalar_type() == torch::kChar) return linear_widened(x, W, scale, bias);
  if (W.scalar_type() != x.scalar_type()) return linear_widened(x, W, {}, bias);
  // the widened paths below record no autograd graph, so they are for inference only
  const bool records_graph = torch::GradMode::is_enabled() && (x.requires_grad() || W.requires_grad());
  // fp32 inference on 5..511 rows (short prefills, small flow steps, batched CFG): one-thread
  // GEMMs on blocks of W's output rows, a block per thread at a time. OpenBLAS splits such
  // narrow-M GEMMs across threads poorly: 2 threads, BAGEL-7B's and Janus-1B's layer matrices,
  // 8 / 18 / 66 / 300 rows at 27 / 62 / 112 / 152 GFLOP/s through torch's linear, 59 / 82 / 131 /
  // 170 in blocks; from ~600 rows the two are level.
  if (W.scalar_type() == torch::kFloat32 && x.scalar_type() == torch::kFloat32 && x.device().is_cpu() &&
      W.numel() >= (int64_t{1} << 18) && x.numel() < kBlockedRowsBelow * W.size(1) && !records_graph)
    return linear_widened(x, W, {}, bias);
  // bf16 on a CPU without bf16 GEMM kernels (cpu_bf16.h): widened to fp32, summed in fp32.
  if (W.scalar_type() == torch::kBFloat16 && x.device().is_cpu() && !cpu_has_bf16_gemm() && !records_graph)
    return linear_widened(x.to(torch::kFloat32), W, {}, bias).to(torch::kBFloat16);
  auto packed = detail::bf16_linear_packed(x, W, bias);
  if (packed.defined()) return packed;
  auto padded = bf16_linear_padded_rows(x, W, bias);
  if (padded.defined()) return padded;
  return torch::nn::functional::linear(x, W, bias);  // what Linear::forward calls (not at::linear)
}

std::vector<torch::Tensor> linear_rows_shared(const torch::Tensor& x, const std::vector<torch::nn::Linear>& ls) {
  std::vector<torch::Tensor> Ws, scales, biases, ys;
  for (const auto& l : ls) {
    Ws.push_back(l->weight);
    scales.push_back(int8_scale(*l));
    biases.push_back(l->bias);
  }
  if (ls.size() > 1) ys = few_rows(x, Ws, scales, biases);
  if (ys.empty())
    for (size_t i = 0; i < ls.size(); ++i) ys.push_back(linear_rows(x, Ws[i], scales[i], biases[i]));
  return ys;
}

int64_t store_linear_weights_transposed(torch::nn::Module& root) {
  torch::NoGradGuard no_grad;
  int64_t n = 0;
  for (const auto& m : root.modules(/*include_self=*/true)) {
    auto* l = m->as<torch::nn::Linear>();
    if (!l || !l->weight.defined()) continue;
    const auto& W = l->weight;
    if (W.dim() != 2 || !W.device().is_cpu() || !W.is_contiguous()) continue;
    // bf16: where oneDNN's packed GEMMs run (linear_onednn.h), whose weights onednn_pack.h lays
    // out from [in, out] storage at memory speed, every shape (oneDNN's own reorder had been
    // faster from it only for out a multiple of 64 and in of 32).
    const bool bf16_packs_faster =
        W.scalar_type() == torch::kBFloat16 && detail::onednn_built() && cpu_has_bf16_gemm();
    if (W.scalar_type() != torch::kFloat32 && !bf16_packs_faster) continue;
    l->weight.set_data(W.t().contiguous().t());
    // The old storage goes back to a heap that keeps freed blocks for reuse (core/memory.h), and
    // the next weight's new one rarely fits the hole: released at once, the peak RSS stays that of
    // the model plus one weight (all at the end: a Janus-Pro-1B run peaked 0.8 GiB higher).
    return_free_memory_to_os();
    ++n;
  }
  return n;
}

}  // namespace omni::nn
