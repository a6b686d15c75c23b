// bf16 <-> fp32 and exp for the CPU row kernels of src/omni/nn (softmax_cpu.cpp,
// elementwise_cpu.cpp): one copy of each, scalar for the tails and AVX-512 for the loops.
// Internal to src/omni/nn.
#pragma once
#include <c10/core/ScalarType.h>
#include <c10/util/BFloat16.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <type_traits>

#if defined(__GNUC__) && defined(__x86_64__)
#include <immintrin.h>
#define OMNI_NN_X86_SIMD 1
// Around a file's AVX-512 kernels: GCC warns of the intrinsics' undefined upper lanes and of the
// vector ABI, neither of which applies to these inlined loops.
#define OMNI_NN_SIMD_WARNINGS_OFF                                        \
  _Pragma("GCC diagnostic push")                                         \
  _Pragma("GCC diagnostic ignored \"-Wmaybe-uninitialized\"")            \
  _Pragma("GCC diagnostic ignored \"-Wpsabi\"")
#define OMNI_NN_SIMD_WARNINGS_ON _Pragma("GCC diagnostic pop")
#endif

namespace omni::nn::simd {

using bf16 = uint16_t;  // raw bits: the upper half of an fp32

// exp(x) = 2^n * e^r with n = round(x / ln 2) and r = x - n ln 2 (|r| <= ln 2 / 2, ln 2 in two
// parts), e^r by Cephes' expf polynomial (relative error ~1e-7, fp32's own rounding). Below -104
// the result is 0 in fp32 anyway; 2^n is applied by scaling the exponent (vscalefps).
inline constexpr float kLog2e = 1.44269504088896341f, kLn2Hi = 0.693359375f, kLn2Lo = -2.12194440e-4f;
inline constexpr float kP0 = 1.9875691500e-4f, kP1 = 1.3981999507e-3f, kP2 = 8.3334519073e-3f, kP3 = 4.1665795894e-2f,
                kP4 = 1.6666665459e-1f, kP5 = 5.0000001201e-1f, kMinX = -104.f;

// 2^t = 2^n * 2^f with n = round(t), |f| <= 1/2, 2^f by a degree-5 polynomial fitted minimax
// (relative error 7.5e-8, below fp32's rounding): the softmax's exp as 2^(x log2 e), with log2 e
// folded into the scale, in 10 vector operations where exp16 takes 14. Below -150 the result is 0
// in fp32 anyway. A NaN t stays NaN (the softmax finds NaN scores through the sum).
inline constexpr float kE0 = 1.000000072f, kE1 = 6.931469671e-1f, kE2 = 2.402211972e-1f, kE3 = 5.550713273e-2f,
                       kE4 = 9.675541334e-3f, kE5 = 1.327647200e-3f, kMinT = -150.f;
inline float exp_poly(float x) {
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
inline float widen(bf16 h) { return c10::detail::f32_from_bits(h); }
inline bf16 narrow(float f) { return c10::detail::round_to_nearest_even(f); }
// The fp32 twins, so that one kernel template serves bf16 and fp32 storage: widen(p[k]) reads,
// stored<T>(v) is what a tensor of T holds of v.
inline float widen(float f) { return f; }
template <class T>
T stored(float v) {
  if constexpr (std::is_same_v<T, bf16>) return narrow(v);
  else return v;
}

// Calls f with a null T* for the storage type of a bf16 or fp32 tensor (T = bf16 or float), so that
// a kernel templated over T is instantiated and picked in one place: the callers read the type as
// std::remove_pointer_t<decltype(tag)>.
template <class F>
void with_storage_type(c10::ScalarType st, F&& f) {
  if (st == c10::ScalarType::BFloat16) f(static_cast<bf16*>(nullptr));
  else f(static_cast<float*>(nullptr));
}

#ifdef OMNI_NN_X86_SIMD
OMNI_NN_SIMD_WARNINGS_OFF
__attribute__((target("avx512f"), always_inline)) inline __m512 load16(const bf16* p) {
  return _mm512_castsi512_ps(
      _mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p))), 16));
}

// Rounds each lane to the nearest bf16 (ties to even), kept as an fp32 value: the value a bf16
// tensor would hold (NaNs with low payload bits only, as any NaN an op produces).
__attribute__((target("avx512f"), always_inline)) inline __m512 round_to_bf16(__m512 v) {
  __m512i u = _mm512_castps_si512(v);
  const __m512i lsb = _mm512_and_si512(_mm512_srli_epi32(u, 16), _mm512_set1_epi32(1));
  u = _mm512_add_epi32(u, _mm512_add_epi32(lsb, _mm512_set1_epi32(0x7fff)));
  return _mm512_castsi512_ps(_mm512_and_si512(u, _mm512_set1_epi32(static_cast<int>(0xffff0000u))));
}

__attribute__((target("avx512f"), always_inline)) inline void store16(bf16* p, __m512 v) {
  const __m512i u = _mm512_srli_epi32(_mm512_castps_si512(round_to_bf16(v)), 16);
  _mm256_storeu_si256(reinterpret_cast<__m256i*>(p), _mm512_cvtepi32_epi16(u));
}

__attribute__((target("avx512f"), always_inline)) inline __m512 load16(const float* p) { return _mm512_loadu_ps(p); }
__attribute__((target("avx512f"), always_inline)) inline void store16(float* p, __m512 v) { _mm512_storeu_ps(p, v); }

// The first n < 16 lanes (mask (1 << n) - 1) of a row's tail, the rest 0 / untouched, so that a
// loop's last partial vector needs no scalar code (AVX512BW + VL for the 16-bit lanes).
__attribute__((target("avx512f,avx512bw,avx512vl"), always_inline)) inline __m512 load16_tail(const bf16* p, __mmask16 m) {
  return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm256_maskz_loadu_epi16(m, p)), 16));
}
__attribute__((target("avx512f"), always_inline)) inline __m512 load16_tail(const float* p, __mmask16 m) {
  return _mm512_maskz_loadu_ps(m, p);
}
__attribute__((target("avx512f,avx512bw,avx512vl"), always_inline)) inline void store16_tail(bf16* p, __mmask16 m, __m512 v) {
  const __m512i u = _mm512_srli_epi32(_mm512_castps_si512(round_to_bf16(v)), 16);
  _mm256_mask_storeu_epi16(p, m, _mm512_cvtepi32_epi16(u));
}
__attribute__((target("avx512f"), always_inline)) inline void store16_tail(float* p, __mmask16 m, __m512 v) {
  _mm512_mask_storeu_ps(p, m, v);
}
inline __mmask16 tail_mask(int64_t n) { return static_cast<__mmask16>((1u << n) - 1); }

// The vector stored<T>: each lane as a tensor of T holds it.
template <class T>
__attribute__((target("avx512f"), always_inline)) inline __m512 stored16(__m512 v) {
  if constexpr (std::is_same_v<T, bf16>) return round_to_bf16(v);
  else return v;
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

__attribute__((target("avx512f"), always_inline)) inline __m512 exp2_16(__m512 t) {
  t = _mm512_max_ps(_mm512_set1_ps(kMinT), t);  // in this order a NaN lane stays NaN
  const __m512 n = _mm512_roundscale_ps(t, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  const __m512 f = _mm512_sub_ps(t, n);
  __m512 p = _mm512_fmadd_ps(_mm512_set1_ps(kE5), f, _mm512_set1_ps(kE4));
  p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(kE3));
  p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(kE2));
  p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(kE1));
  p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(kE0));
  return _mm512_scalef_ps(p, n);
}
OMNI_NN_SIMD_WARNINGS_ON

inline bool has_avx512f() {
  static const bool v = __builtin_cpu_supports("avx512f");
  return v;
}
inline bool has_avx512bw() {  // with VL: the 16-bit masked loads and stores of the tails
  static const bool v = has_avx512f() && __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl");
  return v;
}
inline bool has_avx512bf16() {
  static const bool v = has_avx512f() && __builtin_cpu_supports("avx512bf16");
  return v;
}
#endif

}  // namespace omni::nn::simd
