// One-pass bf16 softmax for the CPU attention. See softmax_bf16.h.
#include "omni/nn/softmax_bf16.h"

#include <ATen/Parallel.h>

#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>

#include "omni/nn/bf16_simd.h"

namespace omni::nn {
namespace {

using namespace simd;

#ifdef OMNI_NN_X86_SIMD
OMNI_NN_SIMD_WARNINGS_OFF
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
OMNI_NN_SIMD_WARNINGS_ON

#endif

}  // namespace

bool softmax_lastdim_bf16_(at::Tensor& x) {
#ifdef OMNI_NN_X86_SIMD
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
