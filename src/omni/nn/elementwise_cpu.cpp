// Fused elementwise row kernels for the decoder. See elementwise_cpu.h.
#include "omni/nn/elementwise_cpu.h"

#include <ATen/Parallel.h>
#include <c10/core/InferenceMode.h>

#include <cmath>
#include <type_traits>

#include "omni/nn/bf16_simd.h"

namespace omni::nn {
namespace {

using namespace simd;

#ifdef OMNI_NN_X86_SIMD
OMNI_NN_SIMD_WARNINGS_OFF
// Rows [r0, r1) of C elements of T (bf16 or float).
template <class T>
__attribute__((target("avx512f"))) void rms_rows(const T* x, const T* w, T* y, int64_t r0, int64_t r1, int64_t C,
                                                 float eps) {
  const int64_t C16 = C / 16 * 16;
  for (int64_t row = r0; row < r1; ++row) {
    const T* xr = x + row * C;
    T* yr = y + row * C;
    __m512 acc = _mm512_setzero_ps();
    for (int64_t k = 0; k < C16; k += 16) {
      const __m512 v = load16(xr + k);
      acc = _mm512_fmadd_ps(v, v, acc);
    }
    float sum = _mm512_reduce_add_ps(acc);
    for (int64_t k = C16; k < C; ++k) sum += widen(xr[k]) * widen(xr[k]);
    const float r = 1.f / std::sqrt(sum / static_cast<float>(C) + eps);
    const __m512 vr = _mm512_set1_ps(r);
    for (int64_t k = 0; k < C16; k += 16)
      store16(yr + k, _mm512_mul_ps(load16(w + k), stored16<T>(_mm512_mul_ps(load16(xr + k), vr))));
    for (int64_t k = C16; k < C; ++k) yr[k] = stored<T>(widen(w[k]) * widen(stored<T>(widen(xr[k]) * r)));
  }
}

// gate = round(round(silu(g)) * u), 16 at a time; silu(x) = x / (1 + exp(-x)) as libtorch writes it.
__attribute__((target("avx512f"))) void silu_mul_bf16(bf16* g, const bf16* u, int64_t n0, int64_t n1) {
  int64_t k = n0;
  const __m512 one = _mm512_set1_ps(1.f);
  for (; k + 16 <= n1; k += 16) {
    const __m512 x = load16(g + k);
    const __m512 s = _mm512_div_ps(x, _mm512_add_ps(one, exp16(_mm512_sub_ps(_mm512_setzero_ps(), x))));
    store16(g + k, _mm512_mul_ps(stored16<bf16>(s), load16(u + k)));
  }
  for (; k < n1; ++k) {
    const float x = widen(g[k]);
    g[k] = narrow(widen(narrow(x / (1.f + exp_poly(-x)))) * widen(u[k]));
  }
}
// tanh-GELU: x / (1 + exp(-2 sqrt(2/pi) (x + 0.044715 x^3))), the same function as
// 0.5 x (1 + tanh(y)) without its cancellation for negative x.
constexpr float kGeluBeta = 0.7978845608028654f, kGeluKappa = 0.044715f;
template <class T>
__attribute__((target("avx512f"))) void gelu_tanh_range(const T* x, T* y, int64_t n0, int64_t n1) {
  int64_t k = n0;
  const __m512 one = _mm512_set1_ps(1.f), m2beta = _mm512_set1_ps(-2.f * kGeluBeta), kappa = _mm512_set1_ps(kGeluKappa);
  for (; k + 16 <= n1; k += 16) {
    const __m512 v = load16(x + k);
    const __m512 inner = _mm512_fmadd_ps(_mm512_mul_ps(kappa, v), _mm512_mul_ps(v, v), v);  // x + kappa x^3
    store16(y + k, _mm512_div_ps(v, _mm512_add_ps(one, exp16(_mm512_mul_ps(m2beta, inner)))));
  }
  for (; k < n1; ++k) {
    const float v = widen(x[k]);
    y[k] = stored<T>(v / (1.f + exp_poly(-2.f * kGeluBeta * (v + kGeluKappa * v * v * v))));
  }
}
__attribute__((target("avx512f"), always_inline)) inline __m512 layer_norm16(__m512 x, __m512 scale, __m512 shift,
                                                                              __m512 w, __m512 b) {
  return _mm512_add_ps(_mm512_mul_ps(_mm512_add_ps(_mm512_mul_ps(x, scale), shift), w), b);
}
// LayerNorm over rows [r0, r1) of C bf16 values, in fp32: the mean, then the variance about it (the
// row stays in L1 for its three passes), then y = round((x * rstd + (-mean * rstd)) * w + b), the
// form libtorch's fp32 kernel evaluates.
__attribute__((target("avx512f,avx512bw,avx512vl"))) void layer_norm_rows_bf16(const bf16* x, const bf16* w,
                                                                               const bf16* b, bf16* y, int64_t r0,
                                                                               int64_t r1, int64_t C, float eps) {
  const int64_t C16 = C / 16 * 16;
  const __mmask16 tail = tail_mask(C - C16);
  for (int64_t row = r0; row < r1; ++row) {
    const bf16* xr = x + row * C;
    bf16* yr = y + row * C;
    __m512 acc = _mm512_setzero_ps();
    for (int64_t k = 0; k < C16; k += 16) acc = _mm512_add_ps(acc, load16(xr + k));
    if (tail) acc = _mm512_add_ps(acc, load16_tail(xr + C16, tail));
    const float mean = _mm512_reduce_add_ps(acc) / static_cast<float>(C);
    const __m512 vmean = _mm512_set1_ps(mean);
    acc = _mm512_setzero_ps();
    for (int64_t k = 0; k < C16; k += 16) {
      const __m512 d = _mm512_sub_ps(load16(xr + k), vmean);
      acc = _mm512_fmadd_ps(d, d, acc);
    }
    if (tail) {
      const __m512 d = _mm512_maskz_sub_ps(tail, load16_tail(xr + C16, tail), vmean);
      acc = _mm512_fmadd_ps(d, d, acc);
    }
    const float rstd = 1.f / std::sqrt(_mm512_reduce_add_ps(acc) / static_cast<float>(C) + eps);
    const __m512 vscale = _mm512_set1_ps(rstd), vshift = _mm512_set1_ps(-mean * rstd);
    for (int64_t k = 0; k < C16; k += 16)
      store16(yr + k, layer_norm16(load16(xr + k), vscale, vshift, load16(w + k), load16(b + k)));
    if (tail)
      store16_tail(yr + C16, tail,
                   layer_norm16(load16_tail(xr + C16, tail), vscale, vshift, load16_tail(w + C16, tail),
                                load16_tail(b + C16, tail)));
  }
}
OMNI_NN_SIMD_WARNINGS_ON
#endif

bool applies(const at::Tensor& t) {
  return c10::InferenceMode::is_enabled() && t.device().is_cpu() && t.is_contiguous() && t.dim() >= 1 &&
         (t.scalar_type() == at::kFloat || t.scalar_type() == at::kBFloat16);
}

}  // namespace

bool rms_norm_rows(const at::Tensor& x, const at::Tensor& weight, double eps, at::Tensor& out) {
#ifdef OMNI_NN_X86_SIMD
  if (!has_avx512f() || !applies(x) || !applies(weight) || weight.scalar_type() != x.scalar_type() ||
      weight.dim() != 1 || weight.size(0) != x.size(-1) || x.numel() == 0)
    return false;
  const int64_t C = x.size(-1), rows = x.numel() / C;
  out = at::empty_like(x);
  const float e = static_cast<float>(eps);
  with_storage_type(x.scalar_type(), [&](auto* tag) {
    using T = std::remove_pointer_t<decltype(tag)>;
    const T* xp = reinterpret_cast<const T*>(x.data_ptr());
    const T* wp = reinterpret_cast<const T*>(weight.data_ptr());
    T* yp = reinterpret_cast<T*>(out.data_ptr());
    at::parallel_for(0, rows, std::max<int64_t>(1, 16384 / C),
                     [&](int64_t r0, int64_t r1) { rms_rows(xp, wp, yp, r0, r1, C, e); });
  });
  return true;
#else
  (void)x, (void)weight, (void)eps, (void)out;
  return false;
#endif
}

bool layer_norm_rows(const at::Tensor& x, const at::Tensor& weight, const at::Tensor& bias, double eps,
                     at::Tensor& out) {
#ifdef OMNI_NN_X86_SIMD
  const auto bf16_vector = [&](const at::Tensor& t) {
    return t.defined() && applies(t) && t.scalar_type() == at::kBFloat16 && t.dim() == 1 && t.size(0) == x.size(-1);
  };
  if (!has_avx512bw() || !applies(x) || x.scalar_type() != at::kBFloat16 || x.numel() == 0 || !bf16_vector(weight) ||
      !bf16_vector(bias))
    return false;
  const int64_t C = x.size(-1), rows = x.numel() / C;
  out = at::empty_like(x);
  const auto* xp = reinterpret_cast<const bf16*>(x.data_ptr());
  const auto* wp = reinterpret_cast<const bf16*>(weight.data_ptr());
  const auto* bp = reinterpret_cast<const bf16*>(bias.data_ptr());
  auto* yp = reinterpret_cast<bf16*>(out.data_ptr());
  const float e = static_cast<float>(eps);
  at::parallel_for(0, rows, std::max<int64_t>(1, 16384 / C),
                   [&](int64_t r0, int64_t r1) { layer_norm_rows_bf16(xp, wp, bp, yp, r0, r1, C, e); });
  return true;
#else
  (void)x, (void)weight, (void)bias, (void)eps, (void)out;
  return false;
#endif
}

bool silu_mul_(at::Tensor& gate, const at::Tensor& up) {
  if (!applies(gate) || !applies(up) || up.scalar_type() != gate.scalar_type() || !up.sizes().equals(gate.sizes()))
    return false;
  if (gate.scalar_type() == at::kFloat) {
    at::silu_(gate);
    gate.mul_(up);
    return true;
  }
#ifdef OMNI_NN_X86_SIMD
  if (!has_avx512f()) return false;
  auto* g = reinterpret_cast<bf16*>(gate.data_ptr());
  const auto* u = reinterpret_cast<const bf16*>(up.data_ptr());
  at::parallel_for(0, gate.numel(), 16384, [&](int64_t n0, int64_t n1) { silu_mul_bf16(g, u, n0, n1); });
  return true;
#else
  return false;
#endif
}

bool gelu_tanh(const at::Tensor& x, at::Tensor& out) {
#ifdef OMNI_NN_X86_SIMD
  if (!has_avx512f() || !applies(x)) return false;
  out = at::empty_like(x);
  with_storage_type(x.scalar_type(), [&](auto* tag) {
    using T = std::remove_pointer_t<decltype(tag)>;
    const T* xp = reinterpret_cast<const T*>(x.data_ptr());
    T* yp = reinterpret_cast<T*>(out.data_ptr());
    at::parallel_for(0, x.numel(), 16384, [&](int64_t n0, int64_t n1) { gelu_tanh_range(xp, yp, n0, n1); });
  });
  return true;
#else
  (void)x, (void)out;
  return false;
#endif
}

}  // namespace omni::nn
