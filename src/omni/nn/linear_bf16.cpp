// The few-row bf16 linear kernel. See linear_bf16.h.
//
// Why: for one row or a CFG pair, torch::linear on bf16 goes to oneDNN, which streams the weights
// of Janus-Pro-7B's layers at 21-28 GB/s on a 2-core AVX512-BF16 EPYC; this loop at 25-42 GB/s
// (each weight read once; 5-40% faster per matrix). For 3-4 rows oneDNN was faster (19-32 GB/s
// against 12-26), so those stay with it.
#include "omni/nn/linear_bf16.h"

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <type_traits>
#include <vector>

#include "omni/nn/bf16_simd.h"
#include "omni/nn/cpu_bf16.h"
#include "omni/nn/row_kernel.h"

namespace omni::nn {
namespace {

using simd::bf16;

#ifdef OMNI_NN_X86_SIMD
OMNI_NN_SIMD_WARNINGS_OFF
// bf16 -> fp32 is a 16-bit shift into the upper half (16 lanes: simd::load16).
__attribute__((target("avx2"), always_inline)) inline __m256 widen8(const bf16* p) {
  return _mm256_castsi256_ps(
      _mm256_slli_epi32(_mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p))), 16));
}
__attribute__((target("avx2"), always_inline)) inline __m256 widen8(const float* p) { return _mm256_loadu_ps(p); }
OMNI_NN_SIMD_WARNINGS_ON
#endif

// bf16 weights for row_kernel; A: the activations' type (x and y), bf16 or float. The epilogue
// adds the fp32 bias to the fp32 sum and rounds once to bf16 (round to nearest even, as c10
// does), or stores fp32 activations as they are.
template <class A_>
struct Bf16Rows {
  using W = bf16;
  using A = A_;
  const A* x;
  const bf16* w;
  int64_t K, O;
  const float* bias;  // fp32 copy, or null
  A* y;
  const float* xp = nullptr;  // AVX2 without AVX-512: x as pair_tile_avx2 reads it (pair_order)
  const bf16* xi = nullptr;   // AVX512-BF16, 2+ rows: x as tile_avx512bf16 reads it (interleave32)
  static constexpr int kAvx512Rows = 4, kAvx512RowsMany = 4;  // as fp32's (the widening is one shift)
  static constexpr int64_t kPrefetchBytes = 1024;             // row_kernel.h tiles, tile_avx512bf16, pair_tile_avx2
  static float wide(bf16 h) { return simd::widen(h); }
  static float wide(float f) { return f; }
#ifdef OMNI_NN_X86_SIMD
  __attribute__((target("avx2"), always_inline)) static __m256 w8(const bf16* p) { return widen8(p); }
  __attribute__((target("avx2"), always_inline)) static __m256 x8(const A* p) { return widen8(p); }
  __attribute__((target("avx512f"), always_inline)) static __m512 w16(const bf16* p) { return simd::load16(p); }
  __attribute__((target("avx512f"), always_inline)) static __m512 x16(const A* p) { return simd::load16(p); }
#endif
  void put(int r, int64_t o, float dot) const {
    const float s = dot + (bias ? bias[o] : 0.f);
    if constexpr (std::is_same_v<A, float>) {
      y[r * O + o] = s;
    } else {
      const c10::BFloat16 b(s);
      std::memcpy(y + r * O + o, &b, sizeof(bf16));
    }
  }
};

#ifdef OMNI_NN_X86_SIMD
OMNI_NN_SIMD_WARNINGS_OFF
// AVX512-BF16: 32 weights per step, vdpbf16ps (pairs of bf16 products summed into fp32 lanes);
// bf16 activations only, so outside row_kernel's widen-then-FMA tile.
// Four weight rows a pass for R input rows (1 or 2 here), the rows of four far-apart pieces of the
// thread's range (row_kernel::piece_length), one sum along k per weight and input row, so each row
// of a pair is summed exactly as one row alone is. Before, one weight row at a time with four sums
// along k (itself ahead of an 8-adjacent-row tile: 52-55 against 39-43 GB/s); over ten Janus-1B
// layers in interleaved rounds on a quiet spell, best GB/s: one row 64 -> 68, two 54 -> 58, and a
// whole 24-layer pair step 47 -> 53 GB/s (one row 49 -> 62 in another spell; in slow spells level).
// Two rows read x interleaved (interleave32: each 32-block of both rows side by side), one run of
// adjacent cache lines beside the weight row rather than two streams 2K elements apart. Over six
// Janus-1B layers (interleaved rounds, means of 8): ahead in 10 of 11 runs, by 6% on average
// (e.g. 57.0 vs 52.5 GB/s; one row: 62.9); a whole 24-layer CFG-pair step 3-4% faster (best of
// 20: 51.7-54.5 ms vs 54.0-56.6). x in a std::vector instead (16-byte aligned: every 64-byte
// load split across two cache lines) lost 20%.
// Each weight row is prefetched as row_kernel::tile_avx512 does (non-temporal, kPrefetchBytes
// ahead; the measurements are there).
template <int R, int OT>
__attribute__((target("avx512f,avx512bf16"), always_inline)) inline void tile_avx512bf16(const Bf16Rows<bf16>& a,
                                                                                          int64_t o, int64_t s) {
  __m512 acc[OT][R];
  for (int t = 0; t < OT; ++t)
    for (int r = 0; r < R; ++r) acc[t][r] = _mm512_setzero_ps();
  // row r's elements k..k+31, for k a multiple of 32, are at xs + R * k + 32 * r
  const bf16* xs = R == 1 ? a.x : a.xi;
  int64_t k = 0;
  for (; k + 32 <= a.K; k += 32) {
    __m512bh xv[R];
    for (int r = 0; r < R; ++r) xv[r] = (__m512bh)_mm512_loadu_si512(xs + R * k + 32 * r);
    for (int t = 0; t < OT; ++t) {
      row_kernel::prefetch_stream(a.w + (o + t * s) * a.K + k, Bf16Rows<bf16>::kPrefetchBytes);
      const __m512bh wv = (__m512bh)_mm512_loadu_si512(a.w + (o + t * s) * a.K + k);
      for (int r = 0; r < R; ++r) acc[t][r] = _mm512_dpbf16_ps(acc[t][r], wv, xv[r]);
    }
  }
  for (int t = 0; t < OT; ++t)
    for (int r = 0; r < R; ++r) a.put(r, o + t * s, row_kernel::tail(a, r, o + t * s, k, _mm512_reduce_add_ps(acc[t][r])));
}
template <int R>
__attribute__((target("avx512f,avx512bf16"))) void rows_avx512bf16(const Bf16Rows<bf16>& a, int64_t o0, int64_t o1) {
  constexpr int OT = 4;  // weight rows a pass, as four far-apart streams (row_kernel::piece_length)
  const int64_t len = row_kernel::piece_length(o0, o1, OT);
  for (int64_t i = 0; i < len; ++i) tile_avx512bf16<R, OT>(a, o0 + i, len);
  for (int64_t o = o0 + OT * len; o < o1; ++o) tile_avx512bf16<R, 1>(a, o, 0);
}
OMNI_NN_SIMD_WARNINGS_ON
#endif

#ifdef OMNI_NN_X86_SIMD
OMNI_NN_SIMD_WARNINGS_OFF
// AVX2: 16 bf16 weights a load. Each 32-bit lane holds weights 2j (low half) and 2j + 1 (high);
// a shift and a mask make both fp32, so x is read in that order (pair_order: each 16-block's even
// elements, then its odd ones). Half the loads and widening instructions of row_kernel's
// tile_avx2 (8 weights a load, a zero-extend and a shift each): streaming a t2i step's 24
// Janus-1B layers (bf16, 2 fp32 rows, 2 threads) at 21-24 GB/s against 14-20 for that tile in
// interleaved rounds on the 2-core AVX2 EPYC (fp32 weights: 30-32); one row 22-25 against 17-19.
// Each weight row is prefetched as row_kernel::tile_avx2 does (not measured in this loop).
template <int R, int OT, class A>
__attribute__((target("avx2,fma"), always_inline)) inline void pair_tile_avx2(const Bf16Rows<A>& a, int64_t o, int64_t s) {
  __m256 acc[OT][R];
  for (int t = 0; t < OT; ++t)
    for (int r = 0; r < R; ++r) acc[t][r] = _mm256_setzero_ps();
  const __m256i high = _mm256_set1_epi32(static_cast<int>(0xFFFF0000u));
  int64_t k = 0;
  for (; k + 16 <= a.K; k += 16) {
    __m256 even[R], odd[R];
    for (int r = 0; r < R; ++r) {
      even[r] = _mm256_loadu_ps(a.xp + r * a.K + k);
      odd[r] = _mm256_loadu_ps(a.xp + r * a.K + k + 8);
    }
    for (int t = 0; t < OT; ++t) {
      row_kernel::prefetch_stream_per_line(a.w + (o + t * s) * a.K + k, k, Bf16Rows<A>::kPrefetchBytes);
      const __m256i w = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(a.w + (o + t * s) * a.K + k));
      const __m256 we = _mm256_castsi256_ps(_mm256_slli_epi32(w, 16));
      const __m256 wo = _mm256_castsi256_ps(_mm256_and_si256(w, high));
      for (int r = 0; r < R; ++r) {
        acc[t][r] = _mm256_fmadd_ps(we, even[r], acc[t][r]);
        acc[t][r] = _mm256_fmadd_ps(wo, odd[r], acc[t][r]);
      }
    }
  }
  for (int t = 0; t < OT; ++t)
    for (int r = 0; r < R; ++r) a.put(r, o + t * s, row_kernel::tail(a, r, o + t * s, k, row_kernel::sum8(acc[t][r])));
}
template <int R, class A>
__attribute__((target("avx2,fma"))) void pair_rows_avx2(const Bf16Rows<A>& a, int64_t o0, int64_t o1) {
  constexpr int OT = 4;
  const int64_t len = row_kernel::piece_length(o0, o1, OT);
  for (int64_t i = 0; i < len; ++i) pair_tile_avx2<R, OT>(a, o0 + i, len);
  for (int64_t o = o0 + OT * len; o < o1; ++o) pair_tile_avx2<R, 1>(a, o, 0);
}
OMNI_NN_SIMD_WARNINGS_ON
#endif

// x [R, K] in fp32 in pair_tile_avx2's order: each full 16-block's elements 0, 2, .., 14, then 1,
// 3, .., 15 (the rest past the last full block is read from x itself, by row_kernel::tail). A
// tensor, 64-byte aligned, where a std::vector's 16-byte alignment splits its loads (interleave32).
template <class A>
torch::Tensor pair_order(const A* x, int64_t R, int64_t K) {
  auto t = torch::empty({R * K}, torch::kFloat32);
  float* xp = t.data_ptr<float>();
  for (int64_t r = 0; r < R; ++r)
    for (int64_t k = 0; k + 16 <= K; k += 16)
      for (int j = 0; j < 8; ++j) {
        xp[r * K + k + j] = Bf16Rows<A>::wide(x[r * K + k + 2 * j]);
        xp[r * K + k + 8 + j] = Bf16Rows<A>::wide(x[r * K + k + 2 * j + 1]);
      }
  return t;
}

#ifdef OMNI_NN_X86_SIMD
// x [R, K] as tile_avx512bf16 reads R >= 2 rows: for each full 32-block of k, row 0's 32
// elements, then row 1's, .. (the rest past the last full block is read from x itself). A
// tensor, so 64-byte aligned as x is: each 32-element load is one cache line.
torch::Tensor interleave32(const bf16* x, int64_t R, int64_t K) {
  auto xi = torch::empty({R * K}, torch::kBFloat16);
  auto* p = reinterpret_cast<bf16*>(xi.data_ptr());
  for (int64_t k = 0; k + 32 <= K; k += 32)
    for (int64_t r = 0; r < R; ++r) std::memcpy(p + R * k + 32 * r, x + r * K + k, 32 * sizeof(bf16));
  return xi;
}
#endif

// row_kernel's loop for this policy: vdpbf16ps for bf16 activations where the CPU has it.
template <class A>
struct Bf16Dispatch {
  template <int R>
  static void run(const Bf16Rows<A>& a, int64_t o0, int64_t o1) {
#ifdef OMNI_NN_X86_SIMD
    if constexpr (std::is_same_v<A, bf16>)
      if (simd::has_avx512bf16()) return rows_avx512bf16<R>(a, o0, o1);
    if (a.xp) return pair_rows_avx2<R>(a, o0, o1);
#endif
    row_kernel::rows<R>(a, o0, o1);  // fp32 activations, or no AVX512-BF16: widen to fp32
  }
};

template <class A>
std::vector<torch::Tensor> run(const torch::Tensor& x, const std::vector<torch::Tensor>& Ws,
                               const std::vector<torch::Tensor>& biases, int64_t R) {
  std::vector<torch::Tensor> b32s;  // the bias goes into the epilogue in fp32
  for (const auto& b : biases) b32s.push_back(b.defined() ? b.to(torch::kFloat32).contiguous() : torch::Tensor());
  const auto xc = x.contiguous();
  const int64_t K = Ws[0].size(1);
  torch::Tensor xp;       // pair_tile_avx2's x, where that tile runs (AVX2, no AVX-512F)
  torch::Tensor x_pairs;  // tile_avx512bf16's x for two rows (interleave32)
#ifdef OMNI_NN_X86_SIMD
  if (row_kernel::isa() == row_kernel::Isa::avx2) xp = pair_order(reinterpret_cast<const A*>(xc.data_ptr()), R, K);
  if constexpr (std::is_same_v<A, bf16>)
    if (R >= 2 && simd::has_avx512bf16()) x_pairs = interleave32(reinterpret_cast<const bf16*>(xc.data_ptr()), R, K);
#endif
  return row_kernel::run_weights<Bf16Rows<A>, Bf16Dispatch<A>>(
      xc, Ws, R, [&](size_t i, const torch::Tensor& xi, const torch::Tensor& y) {
        Bf16Rows<A> p{reinterpret_cast<const A*>(xi.data_ptr()), reinterpret_cast<const bf16*>(Ws[i].data_ptr()),
                      Ws[i].size(1), Ws[i].size(0), b32s[i].defined() ? b32s[i].data_ptr<float>() : nullptr,
                      reinterpret_cast<A*>(y.data_ptr())};
        p.xp = xp.defined() ? xp.data_ptr<float>() : nullptr;
        p.xi = x_pairs.defined() ? reinterpret_cast<const bf16*>(x_pairs.data_ptr()) : nullptr;
        return p;
      });
}

}  // namespace

std::vector<torch::Tensor> linear_bf16_rows_shared(const torch::Tensor& x, const std::vector<torch::Tensor>& Ws,
                                                   const std::vector<torch::Tensor>& biases) {
  if (Ws.empty() || Ws[0].dim() != 2 || x.dim() < 1) return {};
  const int64_t K = Ws[0].size(1);
  const int64_t R = x.size(-1) == K ? x.numel() / K : 0;
  const auto xt = x.scalar_type();
  const int64_t max_rows = xt == torch::kFloat32 || !cpu_has_bf16_gemm() ? kBf16PairedRowsMax : 2;
  if (R < 1 || R > max_rows || !x.device().is_cpu() || (xt != torch::kBFloat16 && xt != torch::kFloat32)) return {};
  for (const auto& W : Ws)
    if (W.dim() != 2 || W.size(1) != K || !W.device().is_cpu() || W.scalar_type() != torch::kBFloat16 || !W.is_contiguous())
      return {};
  const auto one_pass = [&](const torch::Tensor& xr, int64_t r) {
    return xt == torch::kFloat32 ? run<float>(xr, Ws, biases, r) : run<bf16>(xr, Ws, biases, r);
  };
  if (R <= 2) return one_pass(x, R);
  // 3..8 rows: one pass over the weights per pair of rows. Each pass streams the bf16 weights at
  // the two-row rate, where the widened GEMM (linear_widened) runs these few rows at 13-50
  // GFLOP/s (2 cores, AVX2). A row's sums are those of the same row alone or in any pair.
  const auto x2 = x.reshape({R, K});
  std::vector<std::vector<torch::Tensor>> parts(Ws.size());
  for (int64_t r0 = 0; r0 < R; r0 += 2) {
    auto ys = one_pass(x2.narrow(0, r0, std::min<int64_t>(2, R - r0)), std::min<int64_t>(2, R - r0));
    for (size_t i = 0; i < ys.size(); ++i) parts[i].push_back(std::move(ys[i]));
  }
  std::vector<torch::Tensor> out;
  for (size_t i = 0; i < Ws.size(); ++i) {
    auto sizes = x.sizes().vec();
    sizes.back() = Ws[i].size(0);
    out.push_back(torch::cat(parts[i], 0).view(sizes));
  }
  return out;
}

torch::Tensor linear_bf16_rows(const torch::Tensor& x, const torch::Tensor& W, const torch::Tensor& bias) {
  auto ys = linear_bf16_rows_shared(x, {W}, {bias});
  return ys.empty() ? torch::Tensor() : ys[0];
}

}  // namespace omni::nn
