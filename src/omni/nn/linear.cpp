// The few-row linear kernel (decode steps, CFG pairs): reads each weight row once for 1..4
// input rows (AVX-512 or AVX2+FMA when present). See linear.h.
#include "omni/nn/linear.h"

#include "omni/nn/linear_bf16.h"

#include <ATen/Parallel.h>

#include <algorithm>
#include <cstring>

#if defined(__GNUC__) && defined(__x86_64__)
#include <immintrin.h>
#endif

namespace omni::nn {

// ---------------------------------------------------------------------------------------------
// Few-row fp32 linear (decode steps, CFG pairs): y[r, o] = <x[r], W[o]> (+ b[o]) streaming W once.
// For M = 1..4 rows OpenBLAS 0.3.21's sgemm (what torch::linear calls) packs the weight and streams
// it at ~10 GB/s on a 2-core box whose memory reads at ~30 GB/s; this loop, parallel over output
// rows, streams it at ~20 GB/s (Janus-Pro-1B decode and CFG steps: ~2x faster). Summation order
// differs from BLAS, so results differ by float rounding (~1e-6 relative).
namespace {
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wpsabi"  // v8f values never cross a non-inlined call
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"  // the AVX-512 intrinsics' own undefined operands
typedef float v8f __attribute__((vector_size(32)));
inline __attribute__((always_inline)) v8f load8(const float* p) {
  v8f v;
  std::memcpy(&v, p, sizeof v);
  return v;
}

// OT output rows x R input rows per pass over K: each x chunk is loaded once for OT weight rows
// and the OT * R accumulators are independent FMA chains. Inlined into each target-specific
// instantiation below, so the same loop is compiled for the baseline ISA and for AVX2+FMA.
template <int R, int OT>
inline __attribute__((always_inline)) void rows_tile(const float* x, int64_t K, const float* w, int64_t o, float* y,
                                                     int64_t O) {
  v8f acc[OT][R];
  for (int t = 0; t < OT; ++t)
    for (int r = 0; r < R; ++r) acc[t][r] = v8f{};
  int64_t k = 0;
  for (; k + 8 <= K; k += 8) {
    v8f xv[R];
    for (int r = 0; r < R; ++r) xv[r] = load8(x + r * K + k);
    for (int t = 0; t < OT; ++t) {
      const v8f wv = load8(w + (o + t) * K + k);
      for (int r = 0; r < R; ++r) acc[t][r] += wv * xv[r];
    }
  }
  for (int t = 0; t < OT; ++t)
    for (int r = 0; r < R; ++r) {
      const v8f a = acc[t][r];
      float s = ((a[0] + a[1]) + (a[2] + a[3])) + ((a[4] + a[5]) + (a[6] + a[7]));
      for (int64_t j = k; j < K; ++j) s += w[(o + t) * K + j] * x[r * K + j];
      y[r * O + o + t] = s;
    }
}

template <int R>
inline __attribute__((always_inline)) void rows_body(const float* x, int64_t K, const float* w, int64_t o0, int64_t o1,
                                                     float* y, int64_t O) {
  constexpr int OT = R <= 2 ? 4 : 2;  // <= 8 accumulators
  int64_t o = o0;
  for (; o + OT <= o1; o += OT) rows_tile<R, OT>(x, K, w, o, y, O);
  for (; o < o1; ++o) rows_tile<R, 1>(x, K, w, o, y, O);
}

template <int R>
void rows_generic(const float* x, int64_t K, const float* w, int64_t o0, int64_t o1, float* y, int64_t O) {
  rows_body<R>(x, K, w, o0, o1, y, O);
}
#if defined(__GNUC__) && defined(__x86_64__)
template <int R>
__attribute__((target("avx2,fma"))) void rows_avx2(const float* x, int64_t K, const float* w, int64_t o0, int64_t o1,
                                                   float* y, int64_t O) {
  rows_body<R>(x, K, w, o0, o1, y, O);
}

// AVX-512: 16 floats per step and, with 32 registers, twice the weight rows per pass over x (more
// independent streams): Janus-Pro-7B's matrices at 24-38 GB/s for 1-2 rows against 16-23 GB/s for
// the AVX2 loop on the same 2-core EPYC.
template <int R, int OT>
__attribute__((target("avx512f"), always_inline)) inline void tile_avx512(const float* x, int64_t K, const float* w,
                                                                         int64_t o, float* y, int64_t O) {
  __m512 acc[OT][R];
  for (int t = 0; t < OT; ++t)
    for (int r = 0; r < R; ++r) acc[t][r] = _mm512_setzero_ps();
  int64_t k = 0;
  for (; k + 16 <= K; k += 16) {
    __m512 xv[R];
    for (int r = 0; r < R; ++r) xv[r] = _mm512_loadu_ps(x + r * K + k);
    for (int t = 0; t < OT; ++t) {
      const __m512 wv = _mm512_loadu_ps(w + (o + t) * K + k);
      for (int r = 0; r < R; ++r) acc[t][r] = _mm512_fmadd_ps(wv, xv[r], acc[t][r]);
    }
  }
  for (int t = 0; t < OT; ++t)
    for (int r = 0; r < R; ++r) {
      float s = _mm512_reduce_add_ps(acc[t][r]);
      for (int64_t j = k; j < K; ++j) s += w[(o + t) * K + j] * x[r * K + j];
      y[r * O + o + t] = s;
    }
}
template <int R>
__attribute__((target("avx512f"))) void rows_avx512(const float* x, int64_t K, const float* w, int64_t o0, int64_t o1,
                                                    float* y, int64_t O) {
  constexpr int OT = R <= 2 ? 8 : 4;  // <= 16 accumulators
  int64_t o = o0;
  for (; o + OT <= o1; o += OT) tile_avx512<R, OT>(x, K, w, o, y, O);
  for (; o < o1; ++o) tile_avx512<R, 1>(x, K, w, o, y, O);
}

enum class Isa { generic, avx2, avx512 };
Isa isa() {
  static const Isa v = __builtin_cpu_supports("avx512f")                                      ? Isa::avx512
                       : __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") ? Isa::avx2
                                                                                          : Isa::generic;
  return v;
}
#endif

template <int R>
void rows(const float* x, int64_t K, const float* w, int64_t o0, int64_t o1, float* y, int64_t O) {
#if defined(__GNUC__) && defined(__x86_64__)
  switch (isa()) {
    case Isa::avx512: return rows_avx512<R>(x, K, w, o0, o1, y, O);
    case Isa::avx2: return rows_avx2<R>(x, K, w, o0, o1, y, O);
    case Isa::generic: break;
  }
#endif
  rows_generic<R>(x, K, w, o0, o1, y, O);
}
#pragma GCC diagnostic pop
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
  const int64_t K = W.size(1), O = W.size(0);
  const int64_t R = x.dim() >= 1 && x.size(-1) == K ? x.numel() / K : 0;
  if (R < 1 || R > 4 || torch::GradMode::is_enabled() || !x.device().is_cpu() || x.scalar_type() != torch::kFloat32 ||
      W.scalar_type() != torch::kFloat32 || !W.is_contiguous())
    return torch::nn::functional::linear(x, W, bias);  // what Linear::forward calls (not at::linear)
  auto xc = x.contiguous();
  auto sizes = x.sizes().vec();
  sizes.back() = O;
  auto y = torch::empty(sizes, x.options());
  const float* xp = xc.data_ptr<float>();
  const float* wp = W.data_ptr<float>();
  float* yp = y.data_ptr<float>();
  at::parallel_for(0, O, std::max<int64_t>(4, 16384 / K), [&](int64_t o0, int64_t o1) {
    switch (R) {
      case 1: rows<1>(xp, K, wp, o0, o1, yp, O); break;
      case 2: rows<2>(xp, K, wp, o0, o1, yp, O); break;
      case 3: rows<3>(xp, K, wp, o0, o1, yp, O); break;
      default: rows<4>(xp, K, wp, o0, o1, yp, O); break;
    }
  });
  if (bias.defined()) y.add_(bias);
  return y;
}


}  // namespace omni::nn
