// One-pass bf16 softmax for the CPU attention. See softmax_bf16.h.
#include "omni/nn/softmax_bf16.h"

#include <ATen/Parallel.h>

#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>

#if defined(__GNUC__) && defined(__x86_64__)
#include <immintrin.h>
#endif

namespace omni::nn {
namespace {

using bf16 = uint16_t;  // raw bits: the upper half of an fp32

// exp(x) = 2^n * e^r with n = round(x / ln 2) and r = x - n ln 2 (|r| <= ln 2 / 2, ln 2 in two
// parts), e^r by Cephes' expf polynomial (relative error ~1e-7, fp32's own rounding). Below -104
// the result is 0 in fp32 anyway; 2^n is applied by scaling the exponent (vscalefps).
constexpr float kLog2e = 1.44269504088896341f, kLn2Hi = 0.693359375f, kLn2Lo = -2.12194440e-4f;
constexpr float kP0 = 1.9875691500e-4f, kP1 = 1.3981999507e-3f, kP2 = 8.3334519073e-3f, kP3 = 4.1665795894e-2f,
                kP4 = 1.6666665459e-1f, kP5 = 5.0000001201e-1f, kMinX = -104.f;

float exp_poly(float x) {
  x = std::max(x, kMinX);
  const float n = std::nearbyint(x * kLog2e);
  float r = std::fma(-n, kLn2Hi, x);
  r = std::fma(-n, kLn2Lo, r);
  float p = std::fma(kP0, r, kP1);
  p = std::fma(p, r, kP2);
  p = std::fma(p, r, kP3);
  p = std::fma(p, r, kP4);
  p = std::fma(p, r, kP5);
  p = std::fma(p, r * r, r) + 1.f;
  return std::ldexp(p, static_cast<int>(n));
}

// The scalar tails widen and round as c10::BFloat16 does (round to nearest even).
float widen(bf16 h) { return c10::detail::f32_from_bits(h); }
bf16 narrow(float f) { return c10::detail::round_to_nearest_even(f); }

#if defined(__GNUC__) && defined(__x86_64__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wpsabi"
__attribute__((target("avx512f"), always_inline)) inline __m512 load16(const bf16* p) {
  return _mm512_castsi512_ps(
      _mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p))), 16));
}

__attribute__((target("avx512f"), always_inline)) inline void store16(bf16* p, __m512 v) {
  __m512i u = _mm512_castps_si512(v);
  const __m512i lsb = _mm512_and_si512(_mm512_srli_epi32(u, 16), _mm512_set1_epi32(1));
  u = _mm512_add_epi32(u, _mm512_add_epi32(lsb, _mm512_set1_epi32(0x7fff)));
  _mm256_storeu_si256(reinterpret_cast<__m256i*>(p), _mm512_cvtepi32_epi16(_mm512_srli_epi32(u, 16)));
}

__attribute__((target("avx512f"), always_inline)) inline __m512 exp16(__m512 x) {
  x = _mm512_max_ps(x, _mm512_set1_ps(kMinX));
  const __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(kLog2e)), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(kLn2Hi), x);
  r = _mm512_fnmadd_ps(n, _mm512_set1_ps(kLn2Lo), r);
  __m512 p = _mm512_fmadd_ps(_mm512_set1_ps(kP0), r, _mm512_set1_ps(kP1));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(kP2));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(kP3));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(kP4));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(kP5));
  p = _mm512_add_ps(_mm512_fmadd_ps(p, _mm512_mul_ps(r, r), r), _mm512_set1_ps(1.f));
  return _mm512_scalef_ps(p, n);
}

// Rows [r0, r1) of S each: max, then exp(x - max) into `e` with its sum, then e / sum rounded once.
__attribute__((target("avx512f"))) void rows_avx512(bf16* x, int64_t r0, int64_t r1, int64_t S, float* e) {
  const int64_t S16 = S / 16 * 16;
  for (int64_t row = r0; row < r1; ++row) {
    bf16* p = x + row * S;
    __m512 vmax = _mm512_set1_ps(-std::numeric_limits<float>::infinity());
    __mmask16 nan_lanes = 0;  // max_ps drops NaNs: they are looked for on the way
    for (int64_t k = 0; k < S16; k += 16) {
      const __m512 v = load16(p + k);
      nan_lanes |= _mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q);
      vmax = _mm512_max_ps(vmax, v);
    }
    float m = _mm512_reduce_max_ps(vmax);
    bool nan = nan_lanes != 0;
    for (int64_t k = S16; k < S; ++k) {
      const float v = widen(p[k]);
      nan = nan || std::isnan(v);
      m = std::max(m, v);
    }
    // A NaN score, or every key blocked (-inf): the row is NaN, as torch's softmax makes it.
    if (nan || m == -std::numeric_limits<float>::infinity()) {
      for (int64_t k = 0; k < S; ++k) p[k] = 0x7fc0;
      continue;
    }
    const __m512 vm = _mm512_set1_ps(m);
    __m512 vsum = _mm512_setzero_ps();
    for (int64_t k = 0; k < S16; k += 16) {
      const __m512 v = exp16(_mm512_sub_ps(load16(p + k), vm));
      _mm512_storeu_ps(e + k, v);
      vsum = _mm512_add_ps(vsum, v);
    }
    float sum = _mm512_reduce_add_ps(vsum);
    for (int64_t k = S16; k < S; ++k) sum += (e[k] = exp_poly(widen(p[k]) - m));
    const float inv = 1.f / sum;
    const __m512 vinv = _mm512_set1_ps(inv);
    for (int64_t k = 0; k < S16; k += 16) store16(p + k, _mm512_mul_ps(_mm512_loadu_ps(e + k), vinv));
    for (int64_t k = S16; k < S; ++k) p[k] = narrow(e[k] * inv);
  }
}
#pragma GCC diagnostic pop

bool has_avx512f() {
  static const bool v = __builtin_cpu_supports("avx512f");
  return v;
}
#endif

}  // namespace

bool softmax_lastdim_bf16_(at::Tensor& x) {
#if defined(__GNUC__) && defined(__x86_64__)
  if (!has_avx512f() || x.scalar_type() != at::kBFloat16 || !x.device().is_cpu() || !x.is_contiguous() || x.dim() < 1 ||
      x.numel() == 0)
    return false;
  const int64_t S = x.size(-1), rows = x.numel() / S;
  auto* p = reinterpret_cast<bf16*>(x.data_ptr());
  at::parallel_for(0, rows, std::max<int64_t>(1, 16384 / S), [&](int64_t r0, int64_t r1) {
    std::vector<float> e(S);
    rows_avx512(p, r0, r1, S, e.data());
  });
  return true;
#else
  (void)x;
  return false;
#endif
}

}  // namespace omni::nn
