// Weight-only int8 linears (--dtype int8): per-channel quantization, the few-row kernel that
// reads the int8 rows directly, and the block-widened GEMM for weights narrower than the
// activations (int8 for larger batches, the bf16 heads). See linear.h.
#include <algorithm>
#include <cstring>
#include <vector>

#include <ATen/Parallel.h>
#include <ATen/ThreadLocalState.h>

#include "omni/core/error.h"
#include "omni/core/log.h"
#include "omni/core/memory.h"
#include "omni/nn/cpu_bf16.h"
#include "omni/nn/linear.h"
#include "omni/nn/linear_int8.h"
#include "omni/nn/row_kernel.h"
#include "omni/nn/uninitialised.h"

namespace omni::nn {
namespace {

// int8 weights, fp32 activations for row_kernel: y[r, o] = scale[o] * <x[r], q[o]>. The scale
// factors out of the dot product, so each weight is widened int8 -> fp32 (exact) and multiplied in
// fp32 (no rounding of x), one scale multiply per output.
struct Int8Rows {
  using W = int8_t;
  using A = float;
  const float* x;
  const int8_t* w;
  int64_t K, O;
  const float* scale;
  float* y;
  static constexpr int kAvx512Rows = 4, kAvx512RowsMany = 2;  // the widening takes registers too
  static constexpr int64_t kPrefetchBytes = 2048;             // row_kernel.h tile_avx512
  static float wide(int8_t v) { return static_cast<float>(v); }
  static float wide(float v) { return v; }
#if defined(__GNUC__) && defined(__x86_64__)
  // 8 weights: vpmovsxbd + vcvtdq2ps; 16 on AVX-512.
  __attribute__((target("avx2"), always_inline)) static __m256 w8(const int8_t* p) {
    int64_t bits;
    std::memcpy(&bits, p, 8);
    return _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_cvtsi64_si128(bits)));
  }
  __attribute__((target("avx2"), always_inline)) static __m256 x8(const float* p) { return _mm256_loadu_ps(p); }
  __attribute__((target("avx512f"), always_inline)) static __m512 w16(const int8_t* p) {
    return _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p))));
  }
  __attribute__((target("avx512f"), always_inline)) static __m512 x16(const float* p) { return _mm512_loadu_ps(p); }
#endif
  void put(int r, int64_t o, float dot) const { y[r * O + o] = dot * scale[o]; }
};

}  // namespace

std::vector<torch::Tensor> int8_rows(const torch::Tensor& x, const std::vector<torch::Tensor>& qs,
                                     const std::vector<torch::Tensor>& scales, const std::vector<torch::Tensor>& biases,
                                     int64_t R) {
  auto ys = row_kernel::run_weights<Int8Rows>(x, qs, R, [&](size_t i, const torch::Tensor& xc, const torch::Tensor& y) {
    return Int8Rows{xc.data_ptr<float>(), qs[i].data_ptr<int8_t>(), qs[i].size(1), qs[i].size(0),
                    scales[i].data_ptr<float>(), y.data_ptr<float>()};
  });
  for (size_t i = 0; i < ys.size(); ++i)
    if (biases[i].defined()) ys[i].add_(biases[i]);
  return ys;
}

void quantize_rows_int8_into(const torch::Tensor& w, torch::Tensor q, torch::Tensor scale) {
  check(w.dim() == 2 && c10::isFloatingType(w.scalar_type()), "int8 quantization", "expects a float [O, K] weight");
  const int64_t O = w.size(0);
  check(q.sizes() == w.sizes() && q.scalar_type() == torch::kChar && scale.dim() == 1 && scale.size(0) == O,
        "int8 quantization", "expects an int8 [O, K] weight and an [O] scale to fill");
  // 64 rows at a time: float temporaries of a few MB, where whole-matrix ones (5 x the fp32 size of
  // each weight) raised the peak RSS of quantizing Janus-Pro-1B's LM from 4.0 to 7.4 GiB.
  for (int64_t r0 = 0; r0 < O; r0 += 64) {
    const int64_t n = std::min<int64_t>(64, O - r0);
    auto wf = w.narrow(0, r0, n).to(torch::kFloat32);
    auto amax = wf.abs().amax(1);
    auto s = torch::where(amax > 0, amax / 127.0, torch::ones_like(amax));
    scale.narrow(0, r0, n).copy_(s);
    q.narrow(0, r0, n).copy_((wf / s.unsqueeze(1)).round_().clamp_(-127, 127));
  }
}

std::pair<torch::Tensor, torch::Tensor> quantize_rows_int8(const torch::Tensor& w) {
  check(w.dim() == 2, "int8 quantization", "expects a float [O, K] weight");
  auto q = torch::empty(w.sizes(), w.options().dtype(torch::kChar));
  auto scale = torch::empty({w.size(0)}, w.options().dtype(torch::kFloat32));
  quantize_rows_int8_into(w, q, scale);
  return {q, scale};
}

torch::Tensor dequantize_rows_int8(const torch::Tensor& q, const torch::Tensor& scale, c10::ScalarType dtype) {
  return (q.to(torch::kFloat32) * scale.unsqueeze(1)).to(dtype);
}

int64_t widened_block_rows(int64_t M, int64_t K, int64_t O) {
  // BLAS packs all of x again for every block, M x K copies against 2 M K n FLOPs, so many rows
  // take wide blocks (up to 256); few rows take blocks of about 1 MB of fp32 (2^18 / K rows) or
  // of M rows, whichever is more, kept in a core's caches, and at least 32 rows. At least four
  // blocks a matrix for the threads. The rule depends on the shapes only, not on the thread
  // count, so a block's sums (and so y) are the same whatever the threads.
  int64_t rows = std::max<int64_t>(M, (int64_t{1} << 18) / std::max<int64_t>(1, K));
  rows = std::clamp<int64_t>((rows + 15) / 16 * 16, 32, 256);
  rows = std::min(rows, std::max<int64_t>(16, O / 4 / 16 * 16));
  return std::max<int64_t>(1, std::min(rows, O));
}

torch::Tensor linear_widened(const torch::Tensor& x, const torch::Tensor& W, const torch::Tensor& scale,
                             const torch::Tensor& bias) {
  const auto dt = x.scalar_type();
  const torch::Tensor b = bias.defined() ? bias.to(dt) : bias;
  const int64_t O = W.size(0), K = W.size(1);
  const bool autograd = torch::GradMode::is_enabled() && (x.requires_grad() || W.requires_grad());
  if (autograd || !x.device().is_cpu() || !W.is_contiguous() || x.dim() < 1 || x.size(-1) != K || x.numel() == 0) {
    auto w = scale.defined() ? dequantize_rows_int8(W, scale, dt) : W.to(dt);
    return torch::linear(x, w, b);
  }
  auto x2 = x.reshape({-1, K}).contiguous();
  const int64_t M = x2.size(0);
  auto y = torch::empty({M, O}, x.options());
  // Each thread widens its own blocks of output rows into a buffer of its own and runs a
  // one-thread GEMM on each (BLAS runs on one thread inside a parallel region), with no join
  // between the widening and the GEMM. One shared block widened and then split across threads by
  // BLAS ran 10-45% slower on 2 cores (8 to 1026 rows of BAGEL-7B's and Janus-1B's matrices;
  // 1.6-2x at K = 18944, where its 64-row blocks made BLAS re-pack all of x 56 times a matrix).
  const int64_t rows = widened_block_rows(M, K, O);
  const int64_t blocks = (O + rows - 1) / rows;
  const bool same = W.scalar_type() == x2.scalar_type();  // nothing to widen: the blocks alone
  const at::ThreadLocalState caller;  // inference mode for the worker threads
  at::parallel_for(0, blocks, 1, [&](int64_t b0, int64_t b1) {
    at::ThreadLocalStateGuard guard(caller);
    auto buf = same ? torch::Tensor() : torch::empty({rows, K}, x2.options());
    for (int64_t b = b0; b < b1; ++b) {
      const int64_t o0 = b * rows, n = std::min(rows, O - o0);
      auto w = same ? W.narrow(0, o0, n) : buf.narrow(0, 0, n);
      if (!same) w.copy_(W.narrow(0, o0, n));  // int8 -> fp32 is exact; the scale is applied to y below
      auto yv = y.narrow(1, o0, n);  // rows of stride O: BLAS writes them in place (ldc = O)
      at::mm_out(yv, x2, w.t());
    }
  });
  // x @ (q * s)^T == (x @ q^T) * s per output column: one pass over y [R, O] instead of one over
  // each widened block [n, K] (R < K in every prefill and flow step).
  if (scale.defined()) y.mul_(scale.to(dt));
  if (b.defined()) y.add_(b);
  auto sizes = x.sizes().vec();
  sizes.back() = O;
  return y.view(sizes);
}

torch::Tensor embed_rows(const torch::nn::Embedding& table, const torch::Tensor& ids, c10::ScalarType dtype) {
  auto e = torch::embedding(table->weight, ids);  // == forward: no max_norm on these tables
  return e.scalar_type() == dtype ? e : e.to(dtype);
}

namespace {
thread_local c10::ScalarType g_narrow = c10::ScalarType::Undefined;
thread_local int64_t g_narrow_built = 0;  // decoder linears built narrow in the innermost scope
thread_local int64_t g_narrow_towers = 0;  // tower linears built bf16 in it
}

NarrowLinearBuild::NarrowLinearBuild(c10::ScalarType weights)
    : prev_(g_narrow), prev_built_(g_narrow_built), prev_towers_(g_narrow_towers) {
  check(weights == torch::kChar || weights == torch::kBFloat16 || weights == c10::ScalarType::Undefined,
        "narrow linear build", "weights are int8 or bf16");
  g_narrow = weights;
  g_narrow_built = 0;
  g_narrow_towers = 0;
}
NarrowLinearBuild::~NarrowLinearBuild() {
  if (g_narrow == torch::kBFloat16 && g_narrow_built + g_narrow_towers > 0)  // int8's count comes from the loader
    log_info("bf16: ", g_narrow_built, " decoder and ", g_narrow_towers, " tower linears stored in bf16, computed in fp32");
  g_narrow = prev_;
  g_narrow_built = prev_built_;
  g_narrow_towers = prev_towers_;
}
c10::ScalarType narrow_linear_build() { return g_narrow; }

c10::ScalarType compute_dtype(c10::ScalarType t, const c10::Device& device) {
  return narrow_linear_dtype(t, device) == c10::ScalarType::Undefined ? t : c10::ScalarType::Float;
}
c10::ScalarType narrow_linear_dtype(c10::ScalarType t, const c10::Device& device) {
  if (is_int8(t)) return t;
  if (t == torch::kBFloat16 && device.is_cpu() && !cpu_has_bf16_gemm()) return t;
  return c10::ScalarType::Undefined;
}

torch::nn::Linear decoder_linear(int64_t in, int64_t out, bool bias) {
  if (g_narrow == c10::ScalarType::Undefined) return head_linear(in, out, bias);  // initialised unless Uninitialised
  ++g_narrow_built;
  if (g_narrow == torch::kBFloat16) return linear_over_empty(in, out, bias, torch::kBFloat16);
  auto l = linear_over_empty(in, out, bias, torch::kChar);
  l->register_buffer("weight_scale", torch::empty({out}, torch::TensorOptions().dtype(torch::kFloat32)));
  return l;
}

torch::nn::Linear tower_linear(int64_t in, int64_t out, bool bias) {
  if (g_narrow == torch::kBFloat16) {
    ++g_narrow_towers;
    return linear_over_empty(in, out, bias, torch::kBFloat16);
  }
  return default_linear(in, out, bias);
}

torch::Tensor int8_scale(const torch::nn::LinearImpl& l) {
  if (l.weight.scalar_type() != torch::kChar) return {};
  const auto* s = l.named_buffers(false).find("weight_scale");
  check(s != nullptr, "int8 linear", "has no weight_scale");
  return *s;
}

namespace {
// The torch::nn::Linear modules under `root` whose dotted names start with `prefix`.
std::vector<torch::nn::LinearImpl*> linears_under(torch::nn::Module& root, const std::string& prefix) {
  std::vector<torch::nn::LinearImpl*> out;
  for (const auto& item : root.named_modules(/*name_prefix=*/"", /*include_self=*/false)) {
    auto* lin = dynamic_cast<torch::nn::LinearImpl*>(item.value().get());
    if (lin && item.key().compare(0, prefix.size(), prefix) == 0) out.push_back(lin);
  }
  return out;
}
}  // namespace

Int8Report quantize_linears_int8(torch::nn::Module& root, const std::string& prefix) {
  torch::NoGradGuard no_grad;
  Int8Report rep;
  for (auto* lin : linears_under(root, prefix)) {
    if (lin->weight.scalar_type() == torch::kChar) continue;
    rep.bytes_before += lin->weight.numel() * lin->weight.element_size();
    auto [q, scale] = quantize_rows_int8(lin->weight);
    lin->weight.requires_grad_(false);
    lin->weight.set_data(q);  // frees the float storage; the module's `weight` entry now holds int8
    lin->register_buffer("weight_scale", scale.to(q.device()));
    rep.bytes_after += q.numel() + scale.numel() * 4;
    rep.linears++;
  }
  return_free_memory_to_os();  // the float weights' heap blocks
  log_info("int8: ", rep.linears, " linears under ", prefix, " quantized (", rep.bytes_before / 1e6, " MB -> ",
           rep.bytes_after / 1e6, " MB)");
  return rep;
}

int64_t narrow_linears_bf16(torch::nn::Module& root, const std::string& prefix) {
  torch::NoGradGuard no_grad;
  int64_t n = 0;
  for (auto* lin : linears_under(root, prefix)) {
    if (!c10::isFloatingType(lin->weight.scalar_type())) continue;
    lin->weight.set_data(lin->weight.to(torch::kBFloat16));
    ++n;
  }
  return_free_memory_to_os();
  return n;
}

}  // namespace omni::nn
