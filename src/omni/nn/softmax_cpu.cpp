// One-pass CPU softmax for the attention. See softmax_cpu.h.
#include "omni/nn/softmax_cpu.h"

#include <ATen/Parallel.h>

#include <cmath>
#include <cstdint>
#include <limits>
#include <type_traits>
#include <vector>

#include "omni/nn/bf16_simd.h"

namespace omni::nn {
namespace {

using namespace simd;

#ifdef OMNI_NN_X86_SIMD
OMNI_NN_SIMD_WARNINGS_OFF
// Rows [r0, r1) of S each: the max, then exp(scale * (x - max)) with its sum, then each value
// over the sum, rounded once. fp32 rows hold the exps in place; bf16 rows keep them in `e` (fp32)
// so that the division, not the exp, is what rounds.
template <class T>
__attribute__((target("avx512f"))) void rows_avx512(T* x, int64_t r0, int64_t r1, int64_t S, float scale, float* e) {
  constexpr bool kInPlace = std::is_same_v<T, float>;
  const int64_t S16 = S / 16 * 16;
  for (int64_t row = r0; row < r1; ++row) {
    T* p = x + row * S;
    float* ex = kInPlace ? reinterpret_cast<float*>(p) : e;
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
    // A NaN score, an infinite max (+inf - +inf is NaN) or every key blocked (-inf): the row is
    // NaN, as torch's softmax makes it.
    if (nan || std::isinf(m)) {
      for (int64_t k = 0; k < S; ++k) p[k] = stored<T>(std::numeric_limits<float>::quiet_NaN());
      continue;
    }
    const float ms = m * scale;  // scale > 0: the max of scale * x
    const __m512 vs = _mm512_set1_ps(scale), vm = _mm512_set1_ps(ms);
    __m512 vsum = _mm512_setzero_ps();
    for (int64_t k = 0; k < S16; k += 16) {
      const __m512 v = exp16(_mm512_fmsub_ps(load16(p + k), vs, vm));
      _mm512_storeu_ps(ex + k, v);
      vsum = _mm512_add_ps(vsum, v);
    }
    float sum = _mm512_reduce_add_ps(vsum);
    for (int64_t k = S16; k < S; ++k) sum += (ex[k] = exp_poly(std::fma(widen(p[k]), scale, -ms)));
    const float inv = 1.f / sum;
    const __m512 vinv = _mm512_set1_ps(inv);
    for (int64_t k = 0; k < S16; k += 16) store16(p + k, _mm512_mul_ps(_mm512_loadu_ps(ex + k), vinv));
    for (int64_t k = S16; k < S; ++k) p[k] = stored<T>(ex[k] * inv);
  }
}
OMNI_NN_SIMD_WARNINGS_ON
#endif

}  // namespace

bool softmax_lastdim_(at::Tensor& x, float scale) {
#ifdef OMNI_NN_X86_SIMD
  const auto st = x.scalar_type();
  if (!has_avx512f() || (st != at::kBFloat16 && st != at::kFloat) || !x.device().is_cpu() || !x.is_contiguous() ||
      x.dim() < 1 || x.numel() == 0 || !(scale > 0))
    return false;
  const int64_t S = x.size(-1), rows = x.numel() / S;
  with_storage_type(st, [&](auto* tag) {
    using T = std::remove_pointer_t<decltype(tag)>;
    T* p = reinterpret_cast<T*>(x.data_ptr());
    at::parallel_for(0, rows, std::max<int64_t>(1, 16384 / S), [&](int64_t r0, int64_t r1) {
      std::vector<float> e(std::is_same_v<T, float> ? 0 : S);  // fp32 rows hold their exps in place
      rows_avx512(p, r0, r1, S, scale, e.data());
    });
  });
  return true;
#else
  (void)x;
  (void)scale;
  return false;
#endif
}

}  // namespace omni::nn
