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
// A bf16 row's last pass where the CPU has AVX512-BF16: e * inv rounded by vcvtneps2bf16, one
// instruction for store16's seven (round to nearest even as store16; an fp32 denormal, a
// probability under 1.2e-38, becomes 0).
__attribute__((target("avx512f,avx512bf16"), always_inline)) inline __m256i bf16_bits(const float* e, __m512 inv) {
  return reinterpret_cast<__m256i>(_mm512_cvtneps_pbh(_mm512_mul_ps(_mm512_loadu_ps(e), inv)));
}
__attribute__((target("avx512f,avx512bw,avx512vl,avx512bf16"))) void normalize_row_cvt(const float* e, bf16* p,
                                                                                         int64_t S, float inv) {
  const __m512 vinv = _mm512_set1_ps(inv);
  const int64_t S16 = S / 16 * 16;
  for (int64_t k = 0; k < S16; k += 16) _mm256_storeu_si256(reinterpret_cast<__m256i*>(p + k), bf16_bits(e + k, vinv));
  if (S16 < S) _mm256_mask_storeu_epi16(p + S16, tail_mask(S - S16), bf16_bits(e + S16, vinv));  // e: 16-lane room
}

// Rows [r0, r1) of S each: the max, then exp(scale * (x - max)) = 2^((x - max) c) with c = scale
// log2 e, with its sum, then each value over the sum, rounded once. fp32 rows hold the exps in
// place; bf16 rows keep them in `e` (fp32, S rounded up to 16) so that the division, not the exp,
// is what rounds. A row's last partial vector is masked (scalar tails cost 1369-key rows a fifth
// of their time). NaN scores are not looked for in the max pass (vmaxps drops them): they make the
// sum NaN.
template <class T>
__attribute__((target("avx512f,avx512bw,avx512vl"))) void rows_avx512(T* x, int64_t r0, int64_t r1, int64_t S,
                                                                      float scale, float* e, bool cvt) {
  constexpr bool kInPlace = std::is_same_v<T, float>;
  const int64_t S16 = S / 16 * 16;
  const __mmask16 tail = tail_mask(S - S16);
  const float c = scale * kLog2e;
  const __m512 vc = _mm512_set1_ps(c);
  for (int64_t row = r0; row < r1; ++row) {
    T* p = x + row * S;
    float* ex = kInPlace ? reinterpret_cast<float*>(p) : e;
    __m512 vmax = _mm512_set1_ps(-std::numeric_limits<float>::infinity());
    for (int64_t k = 0; k < S16; k += 16) vmax = _mm512_max_ps(vmax, load16(p + k));
    if (tail) vmax = _mm512_mask_max_ps(vmax, tail, vmax, load16_tail(p + S16, tail));
    const float m = _mm512_reduce_max_ps(vmax);
    // An infinite max (+inf - +inf is NaN; every key blocked: -inf - -inf) or a NaN score makes
    // the sum NaN and the row NaN, as torch's softmax makes it.
    // (x - max) * c, not x c - max c: c = log2 e times a max at fp32's lowest (HF's fill for a row
    // that sees no key) overflows.
    const __m512 vm = _mm512_set1_ps(m);
    __m512 vsum = _mm512_setzero_ps();
    for (int64_t k = 0; k < S16; k += 16) {
      const __m512 v = exp2_16(_mm512_mul_ps(_mm512_sub_ps(load16(p + k), vm), vc));
      _mm512_storeu_ps(ex + k, v);
      vsum = _mm512_add_ps(vsum, v);
    }
    if (tail) {
      const __m512 v = exp2_16(_mm512_mul_ps(_mm512_sub_ps(load16_tail(p + S16, tail), vm), vc));
      _mm512_mask_storeu_ps(ex + S16, tail, v);
      vsum = _mm512_mask_add_ps(vsum, tail, vsum, v);
    }
    const float sum = _mm512_reduce_add_ps(vsum);
    if (std::isnan(sum)) {
      for (int64_t k = 0; k < S; ++k) p[k] = stored<T>(std::numeric_limits<float>::quiet_NaN());
      continue;
    }
    const float inv = 1.f / sum;
    if constexpr (std::is_same_v<T, bf16>) {
      if (cvt) {
        normalize_row_cvt(ex, p, S, inv);
        continue;
      }
    }
    const __m512 vinv = _mm512_set1_ps(inv);
    for (int64_t k = 0; k < S16; k += 16) store16(p + k, _mm512_mul_ps(_mm512_loadu_ps(ex + k), vinv));
    if (tail) store16_tail(p + S16, tail, _mm512_mul_ps(_mm512_maskz_loadu_ps(tail, ex + S16), vinv));
  }
}
OMNI_NN_SIMD_WARNINGS_ON
#endif

bool softmax_rows(at::Tensor& x, float scale, bool allow_cvt) {
#ifdef OMNI_NN_X86_SIMD
  const auto st = x.scalar_type();
  if (!has_avx512bw() || (st != at::kBFloat16 && st != at::kFloat) || !x.device().is_cpu() || !x.is_contiguous() ||
      x.dim() < 1 || x.numel() == 0 || !(scale > 0))
    return false;
  const int64_t S = x.size(-1), rows = x.numel() / S;
  const bool cvt = allow_cvt && has_avx512bf16();
  with_storage_type(st, [&](auto* tag) {
    using T = std::remove_pointer_t<decltype(tag)>;
    T* p = reinterpret_cast<T*>(x.data_ptr());
    at::parallel_for(0, rows, std::max<int64_t>(1, 16384 / S), [&](int64_t r0, int64_t r1) {
      std::vector<float> e(std::is_same_v<T, float> ? 0 : (S + 15) / 16 * 16);  // fp32 rows: exps in place
      rows_avx512(p, r0, r1, S, scale, e.data(), cvt);
    });
  });
  return true;
#else
  (void)x, (void)scale, (void)allow_cvt;
  return false;
#endif
}
}  // namespace

bool softmax_lastdim_(at::Tensor& x, float scale) { return softmax_rows(x, scale, true); }

bool softmax_fp32_rows_here_(float* p, int64_t rows, int64_t S) {
#ifdef OMNI_NN_X86_SIMD
  if (!has_avx512bw()) return false;
  rows_avx512(p, 0, rows, S, 1.f, nullptr, false);  // fp32: the exps in place, no scratch
  return true;
#else
  (void)p, (void)rows, (void)S;
  return false;
#endif
}

namespace detail {
bool softmax_lastdim_without_bf16_cvt_(at::Tensor& x, float scale) { return softmax_rows(x, scale, false); }
}  // namespace detail

}  // namespace omni::nn
