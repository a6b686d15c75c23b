// The few-row bf16 linear kernel. See linear_bf16.h.
//
// Why: for one row or a CFG pair, torch::linear on bf16 goes to oneDNN, which streams the weights
// of Janus-Pro-7B's layers at 21-28 GB/s on a 2-core AVX512-BF16 EPYC; this loop at 25-42 GB/s
// (each weight read once; 5-40% faster per matrix). For 3-4 rows oneDNN was faster (19-32 GB/s
// against 12-26), so those stay with it.
#include "omni/nn/linear_bf16.h"

#include <ATen/Parallel.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <type_traits>

#if defined(__GNUC__) && defined(__x86_64__)
#include <immintrin.h>
#endif

namespace omni::nn {
namespace {

using bf16 = uint16_t;  // raw bits: the upper half of an fp32

inline float widen(bf16 h) {
  const uint32_t u = static_cast<uint32_t>(h) << 16;
  float f;
  std::memcpy(&f, &u, sizeof f);
  return f;
}

inline float widen(float f) { return f; }

// The output: fp32 sum + bias, rounded once to bf16 (round to nearest even, as c10 does), or
// stored as is for fp32 activations.
inline void store(bf16* y, float s) {
  const c10::BFloat16 b(s);
  std::memcpy(y, &b, sizeof *y);
}
inline void store(float* y, float s) { *y = s; }

// A: the activations' type (x and y), bf16 or float; the weights are always bf16.
template <class A>
struct Args {
  const A* x;
  int64_t K;
  const bf16* w;
  const float* bias;  // fp32 copy, or null
  A* y;
  int64_t O;
};

template <class A>
inline float tail(const Args<A>& a, int r, int64_t o, int64_t k, float s) {
  for (; k < a.K; ++k) s += widen(a.w[o * a.K + k]) * widen(a.x[r * a.K + k]);
  return s + (a.bias ? a.bias[o] : 0.f);
}

template <int R, class A>
void rows_generic(const Args<A>& a, int64_t o0, int64_t o1) {
  for (int64_t o = o0; o < o1; ++o)
    for (int r = 0; r < R; ++r) store(a.y + r * a.O + o, tail(a, r, o, 0, 0.f));
}

#if defined(__GNUC__) && defined(__x86_64__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"  // the intrinsics' own undefined operands
#pragma GCC diagnostic ignored "-Wpsabi"  // vector values never cross a non-inlined call

__attribute__((target("avx2"), always_inline)) inline __m256 widen8(const bf16* p) {
  return _mm256_castsi256_ps(
      _mm256_slli_epi32(_mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p))), 16));
}
__attribute__((target("avx512f"), always_inline)) inline __m512 widen16(const bf16* p) {
  return _mm512_castsi512_ps(
      _mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p))), 16));
}
__attribute__((target("avx2"), always_inline)) inline __m256 widen8(const float* p) { return _mm256_loadu_ps(p); }
__attribute__((target("avx512f"), always_inline)) inline __m512 widen16(const float* p) { return _mm512_loadu_ps(p); }

// AVX2: 8 weights per step, widened by a 16-bit shift; OT output rows x R input rows of accumulators.
template <int R, int OT, class A>
__attribute__((target("avx2,fma"), always_inline)) inline void tile_avx2(const Args<A>& a, int64_t o) {
  __m256 acc[OT][R];
  for (int t = 0; t < OT; ++t)
    for (int r = 0; r < R; ++r) acc[t][r] = _mm256_setzero_ps();
  int64_t k = 0;
  for (; k + 8 <= a.K; k += 8) {
    __m256 xv[R];
    for (int r = 0; r < R; ++r) xv[r] = widen8(a.x + r * a.K + k);
    for (int t = 0; t < OT; ++t) {
      const __m256 wv = widen8(a.w + (o + t) * a.K + k);
      for (int r = 0; r < R; ++r) acc[t][r] = _mm256_fmadd_ps(wv, xv[r], acc[t][r]);
    }
  }
  for (int t = 0; t < OT; ++t)
    for (int r = 0; r < R; ++r) {
      alignas(32) float v[8];
      _mm256_store_ps(v, acc[t][r]);
      const float s = ((v[0] + v[1]) + (v[2] + v[3])) + ((v[4] + v[5]) + (v[6] + v[7]));
      store(a.y + r * a.O + o + t, tail(a, r, o + t, k, s));
    }
}

// AVX-512F: 16 weights per step, widened by a shift.
template <int R, int OT, class A>
__attribute__((target("avx512f"), always_inline)) inline void tile_avx512(const Args<A>& a, int64_t o) {
  __m512 acc[OT][R];
  for (int t = 0; t < OT; ++t)
    for (int r = 0; r < R; ++r) acc[t][r] = _mm512_setzero_ps();
  int64_t k = 0;
  for (; k + 16 <= a.K; k += 16) {
    __m512 xv[R];
    for (int r = 0; r < R; ++r) xv[r] = widen16(a.x + r * a.K + k);
    for (int t = 0; t < OT; ++t) {
      const __m512 wv = widen16(a.w + (o + t) * a.K + k);
      for (int r = 0; r < R; ++r) acc[t][r] = _mm512_fmadd_ps(wv, xv[r], acc[t][r]);
    }
  }
  for (int t = 0; t < OT; ++t)
    for (int r = 0; r < R; ++r) store(a.y + r * a.O + o + t, tail(a, r, o + t, k, _mm512_reduce_add_ps(acc[t][r])));
}

// AVX512-BF16: 32 weights per step, vdpbf16ps (pairs of bf16 products summed into fp32 lanes);
// bf16 activations only.
template <int R, int OT, class A>
__attribute__((target("avx512f,avx512bf16"), always_inline)) inline void tile_avx512bf16(const Args<A>& a, int64_t o) {
  __m512 acc[OT][R];
  for (int t = 0; t < OT; ++t)
    for (int r = 0; r < R; ++r) acc[t][r] = _mm512_setzero_ps();
  int64_t k = 0;
  for (; k + 32 <= a.K; k += 32) {
    __m512bh xv[R];
    for (int r = 0; r < R; ++r) xv[r] = (__m512bh)_mm512_loadu_si512(a.x + r * a.K + k);
    for (int t = 0; t < OT; ++t) {
      const __m512bh wv = (__m512bh)_mm512_loadu_si512(a.w + (o + t) * a.K + k);
      for (int r = 0; r < R; ++r) acc[t][r] = _mm512_dpbf16_ps(acc[t][r], wv, xv[r]);
    }
  }
  for (int t = 0; t < OT; ++t)
    for (int r = 0; r < R; ++r) store(a.y + r * a.O + o + t, tail(a, r, o + t, k, _mm512_reduce_add_ps(acc[t][r])));
}

// OT weight rows per pass over x: AVX2 has 16 registers (8 accumulators), AVX-512 32 (16).
#define OMNI_BF16_ROWS(NAME, TILE, TARGET, OT)                                        \
  template <int R, class A>                                                              \
  __attribute__((target(TARGET))) void NAME(const Args<A>& a, int64_t o0, int64_t o1) { \
    int64_t o = o0;                                                                      \
    for (; o + OT <= o1; o += OT) TILE<R, OT>(a, o);                                     \
    for (; o < o1; ++o) TILE<R, 1>(a, o);                                                \
  }
OMNI_BF16_ROWS(rows_avx2, tile_avx2, "avx2,fma", 4)
OMNI_BF16_ROWS(rows_avx512, tile_avx512, "avx512f", 8)
OMNI_BF16_ROWS(rows_avx512bf16, tile_avx512bf16, "avx512f,avx512bf16", 8)
#undef OMNI_BF16_ROWS
#pragma GCC diagnostic pop

enum class Isa { generic, avx2, avx512, avx512bf16 };
Isa isa() {
  static const Isa v = !__builtin_cpu_supports("avx512f")
                           ? (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") ? Isa::avx2 : Isa::generic)
                       : __builtin_cpu_supports("avx512bf16") ? Isa::avx512bf16
                                                              : Isa::avx512;
  return v;
}
#endif

template <int R, class A>
void rows(const Args<A>& a, int64_t o0, int64_t o1) {
#if defined(__GNUC__) && defined(__x86_64__)
  switch (isa()) {
    case Isa::avx512bf16:
      if constexpr (std::is_same_v<A, bf16>) return rows_avx512bf16<R>(a, o0, o1);
      return rows_avx512<R>(a, o0, o1);  // fp32 activations: widen the weights
    case Isa::avx512: return rows_avx512<R>(a, o0, o1);
    case Isa::avx2: return rows_avx2<R>(a, o0, o1);
    case Isa::generic: break;
  }
#endif
  rows_generic<R>(a, o0, o1);
}

template <class A>
torch::Tensor run(const torch::Tensor& x, const torch::Tensor& W, const torch::Tensor& bias, int64_t R) {
  const int64_t O = W.size(0), K = W.size(1);
  auto xc = x.contiguous();
  auto sizes = x.sizes().vec();
  sizes.back() = O;
  auto y = torch::empty(sizes, x.options());
  torch::Tensor b32 = bias.defined() ? bias.to(torch::kFloat32).contiguous() : torch::Tensor();
  Args<A> a{reinterpret_cast<const A*>(xc.data_ptr()), K, reinterpret_cast<const bf16*>(W.data_ptr()),
            b32.defined() ? b32.data_ptr<float>() : nullptr, reinterpret_cast<A*>(y.data_ptr()), O};
  at::parallel_for(0, O, std::max<int64_t>(4, 16384 / K), [&](int64_t o0, int64_t o1) {
    if (R == 1) rows<1>(a, o0, o1);
    else rows<2>(a, o0, o1);
  });
  return y;
}

}  // namespace

torch::Tensor linear_bf16_rows(const torch::Tensor& x, const torch::Tensor& W, const torch::Tensor& bias) {
  if (W.dim() != 2 || x.dim() < 1) return {};
  const int64_t K = W.size(1);
  const int64_t R = x.size(-1) == K ? x.numel() / K : 0;
  const auto xt = x.scalar_type();
  if (R < 1 || R > 2 || !x.device().is_cpu() || !W.device().is_cpu() || W.scalar_type() != torch::kBFloat16 ||
      !W.is_contiguous() || (xt != torch::kBFloat16 && xt != torch::kFloat32))
    return {};
  return xt == torch::kFloat32 ? run<float>(x, W, bias, R) : run<bf16>(x, W, bias, R);
}

}  // namespace omni::nn
