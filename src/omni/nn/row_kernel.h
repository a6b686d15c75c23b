// The few-row linear loop shared by the fp32, int8 and bf16 kernels (linear.cpp, linear_int8.cpp,
// linear_bf16.cpp): y[r, o] = out(<x[r], w[o]>) for 1..4 input rows, each weight row read once for
// every input row. Only the weight and activation loads and the epilogue differ between them, so
// those come from a policy and the SIMD tile is written once per instruction set.
//
// A policy P holds the operands and says how to read and finish them:
//   const P::A* x; const P::W* w; int64_t K, O;        x [R, K], w [O, K]
//   static float wide(W), wide(A)                        one element as fp32 (the scalar tail)
//   static __m256 w8(const W*), x8(const A*)            8 elements as fp32 (AVX2)
//   static __m512 w16(const W*), x16(const A*)          16 elements as fp32 (AVX-512F)
//   static constexpr int kAvx512Rows, kAvx512RowsMany    weight rows per AVX-512 pass (1-2 / 3-4 input rows)
//   static constexpr int64_t kPrefetchBytes              how far ahead a pass prefetches each weight row
//   void put(int r, int64_t o, float dot) const          the epilogue: scale, bias, store
// Internal to src/omni/nn: include only from a kernel's .cpp.
#pragma once
#include <ATen/ATen.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <cstdint>
#include <vector>

#if defined(__GNUC__) && defined(__x86_64__)
#include <immintrin.h>
#endif

namespace omni::nn::row_kernel {

#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"  // the intrinsics' own undefined operands
#pragma GCC diagnostic ignored "-Wpsabi"                // vector values never cross a non-inlined call

// The rest of a dot product past the last full SIMD step, in order.
template <class P>
inline float tail(const P& p, int r, int64_t o, int64_t k, float s) {
  for (; k < p.K; ++k) s += P::wide(p.w[o * p.K + k]) * P::wide(p.x[r * p.K + k]);
  return s;
}

// Portable C++ (no AVX2): one output at a time.
template <int R, class P>
void rows_generic(const P& p, int64_t o0, int64_t o1) {
  for (int64_t o = o0; o < o1; ++o)
    for (int r = 0; r < R; ++r) p.put(r, o, tail(p, r, o, 0, 0.f));
}

// A tile reads OT weight rows per pass over K, and which rows decides how memory is read. OT
// adjacent rows are OT streams a row long (K elements) that all restart at the next tile; instead
// the loops cut a thread's rows o0..o1 into OT equal pieces and a pass reads the next row of each:
// OT streams each a whole piece long (rows o0 + i + t * len, t < OT, i < len), then the rows past
// OT pieces (< OT) one at a time. A read-only pass shows the same: 4 streams a thread 79-84 GB/s,
// 8 streams 74-77, 16 62-65, one 63-71, against a 68-73 GB/s copy. In the library, five
// Janus-1B layers (2 threads, the old and new loops in interleaved rounds, a quiet spell, best
// GB/s of the bytes read): fp32 AVX-512 one row 62 -> 75 (8 adjacent rows -> 4 pieces), two
// 55 -> 59, four 47 -> 52 (4 adjacent -> 4 pieces); the AVX2 loop (run on the same machine) one
// row 53 -> 72, two 43 -> 59, four 26 -> 35; int8 one row 31 -> 60, two 26 -> 40, four 15 -> 19.
// In slow spells (copy ~30-40 GB/s) old and new run level at the memory's rate. Each row's sum is
// unchanged: one chain per row along k.
inline int64_t piece_length(int64_t o0, int64_t o1, int OT) { return (o1 - o0) / OT; }

#if defined(__GNUC__) && defined(__x86_64__)
// The weight line `ahead` bytes past w, fetched for a one-time read (see tile_avx512).
template <class W>
__attribute__((always_inline)) inline void prefetch_stream(const W* w, int64_t ahead) {
  _mm_prefetch(reinterpret_cast<const char*>(w) + ahead, _MM_HINT_NTA);
}
// The same once a 64-byte line, for loops whose step k (of weights of type W) is under a line.
template <class W>
__attribute__((always_inline)) inline void prefetch_stream_per_line(const W* w, int64_t k, int64_t ahead) {
  if (((k * static_cast<int64_t>(sizeof(W))) & 63) == 0) prefetch_stream(w, ahead);
}

// The 8 lanes' sum, in a fixed order.
__attribute__((target("avx2"), always_inline)) inline float sum8(__m256 a) {
  alignas(32) float v[8];
  _mm256_store_ps(v, a);
  return ((v[0] + v[1]) + (v[2] + v[3])) + ((v[4] + v[5]) + (v[6] + v[7]));
}

// OT weight rows o, o + s, .., o + (OT - 1) s x R input rows per pass over K: each x chunk is
// loaded once for OT weight rows and the OT * R accumulators are independent FMA chains (AVX2 has
// 16 registers: <= 8 of them). Each weight row is prefetched as in tile_avx512: this loop run on
// the AVX-512 Zen 5 (fp32, Janus-1B's 24 layers, medians of 10 shuffled rounds) one row 67.5 ->
// 71.9 GB/s, two rows 52.9 -> 66.3 (2048 bytes ahead: 67.0, 64.8); bf16 and int8 in this loop
// are not measured, nor is an AVX2-only CPU.
template <int R, int OT, class P>
__attribute__((target("avx2,fma"), always_inline)) inline void tile_avx2(const P& p, int64_t o, int64_t s) {
  __m256 acc[OT][R];
  for (int t = 0; t < OT; ++t)
    for (int r = 0; r < R; ++r) acc[t][r] = _mm256_setzero_ps();
  int64_t k = 0;
  for (; k + 8 <= p.K; k += 8) {
    __m256 xv[R];
    for (int r = 0; r < R; ++r) xv[r] = P::x8(p.x + r * p.K + k);
    for (int t = 0; t < OT; ++t) {
      prefetch_stream_per_line(p.w + (o + t * s) * p.K + k, k, P::kPrefetchBytes);
      const __m256 wv = P::w8(p.w + (o + t * s) * p.K + k);
      for (int r = 0; r < R; ++r) acc[t][r] = _mm256_fmadd_ps(wv, xv[r], acc[t][r]);
    }
  }
  for (int t = 0; t < OT; ++t)
    for (int r = 0; r < R; ++r) p.put(r, o + t * s, tail(p, r, o + t * s, k, sum8(acc[t][r])));
}

// AVX-512F: 16 elements per step and 32 registers, so four weight rows a pass also for 3-4 input
// rows (the policy's kAvx512Rows / kAvx512RowsMany; with adjacent rows, 8 a pass read Janus-Pro-7B's
// fp32 matrices at 24-38 GB/s for 1-2 rows against 16-23 GB/s for the AVX2 loop of 4 on the same
// 2-core EPYC, before piece_length).
//
// Each weight row is prefetched P::kPrefetchBytes ahead with the non-temporal hint. The weights
// are read once a step and never again before the next step, and with the hint the streamed lines
// probably stop displacing the cache's useful lines (on AMD's Zen the L3 is a victim cache that
// takes every line the L2 evicts). Janus-1B's 24 layers through linear_rows as the model calls it
// (2 threads, AVX-512 Zen 5 EPYC, the configurations shuffled in each round, medians of 10-20
// rounds, GB/s of the weight bytes): bf16 one row 54.7 -> 66.0 and 62.7 -> 70.6, two rows 52.4 ->
// 59.6 and 42.0 -> 64.3; fp32 one row 56.3 -> 69.1 and 69.7 -> 73.7, two rows 41.4 -> 65.2 and
// 60.7 -> 61.9, four rows 39.8 -> 45.1; int8 two rows 30.5 -> 41.9 and 36.3 -> 50.1. Of 512, 1024,
// 2048 and 4096 bytes ahead 1024 was best for fp32 and bf16, 2048 for int8. Three and four fp32
// rows had prefetched 384 elements ahead into all levels (T0): level with this (49.1 vs 48.8 GB/s
// at 3 rows). Prefetches never fault, also past the end of the weights.
template <int R, int OT, class P>
__attribute__((target("avx512f"), always_inline)) inline void tile_avx512(const P& p, int64_t o, int64_t s) {
  __m512 acc[OT][R];
  for (int t = 0; t < OT; ++t)
    for (int r = 0; r < R; ++r) acc[t][r] = _mm512_setzero_ps();
  int64_t k = 0;
  for (; k + 16 <= p.K; k += 16) {
    __m512 xv[R];
    for (int r = 0; r < R; ++r) xv[r] = P::x16(p.x + r * p.K + k);
    for (int t = 0; t < OT; ++t) {
      prefetch_stream(p.w + (o + t * s) * p.K + k, P::kPrefetchBytes);
      const __m512 wv = P::w16(p.w + (o + t * s) * p.K + k);
      for (int r = 0; r < R; ++r) acc[t][r] = _mm512_fmadd_ps(wv, xv[r], acc[t][r]);
    }
  }
  for (int t = 0; t < OT; ++t)
    for (int r = 0; r < R; ++r) p.put(r, o + t * s, tail(p, r, o + t * s, k, _mm512_reduce_add_ps(acc[t][r])));
}

template <int R, class P>
__attribute__((target("avx2,fma"))) void rows_avx2(const P& p, int64_t o0, int64_t o1) {
  constexpr int OT = R <= 2 ? 4 : 2;
  const int64_t len = piece_length(o0, o1, OT);
  for (int64_t i = 0; i < len; ++i) tile_avx2<R, OT>(p, o0 + i, len);
  for (int64_t o = o0 + OT * len; o < o1; ++o) tile_avx2<R, 1>(p, o, 0);
}

template <int R, class P>
__attribute__((target("avx512f"))) void rows_avx512(const P& p, int64_t o0, int64_t o1) {
  constexpr int OT = R <= 2 ? P::kAvx512Rows : P::kAvx512RowsMany;  // <= 16 accumulators
  const int64_t len = piece_length(o0, o1, OT);
  for (int64_t i = 0; i < len; ++i) tile_avx512<R, OT>(p, o0 + i, len);
  for (int64_t o = o0 + OT * len; o < o1; ++o) tile_avx512<R, 1>(p, o, 0);
}

enum class Isa { generic, avx2, avx512 };
inline Isa isa() {
  static const Isa v = __builtin_cpu_supports("avx512f")                                      ? Isa::avx512
                       : __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") ? Isa::avx2
                                                                                          : Isa::generic;
  return v;
}
#endif

// Output rows o0..o1 of R input rows, through the widest loop this CPU runs.
template <int R, class P>
void rows(const P& p, int64_t o0, int64_t o1) {
#if defined(__GNUC__) && defined(__x86_64__)
  switch (isa()) {
    case Isa::avx512: return rows_avx512<R>(p, o0, o1);
    case Isa::avx2: return rows_avx2<R>(p, o0, o1);
    case Isa::generic: break;
  }
#endif
  rows_generic<R>(p, o0, o1);
}

// The loop a policy runs for R input rows: rows<R> unless the policy brings a tile of its own.
template <class P>
struct WidenedRows {
  template <int R>
  static void run(const P& p, int64_t o0, int64_t o1) {
    rows<R>(p, o0, o1);
  }
};

// Every output row of n weights that read the same x (a layer's q, k and v; gate and up) for
// R = 1..4 input rows, as one range of rows split across the threads: one fork and join, and
// each thread's share balanced over all of them (grain: at least 4 rows, ~16 Ki weights a task).
template <class P, class Rows = WidenedRows<P>>
void run_many(const P* ps, size_t n, int64_t R) {
  int64_t total = 0;
  for (size_t i = 0; i < n; ++i) total += ps[i].O;
  at::parallel_for(0, total, std::max<int64_t>(4, 16384 / ps[0].K), [&](int64_t o0, int64_t o1) {
    int64_t base = 0;
    for (size_t i = 0; i < n; base += ps[i].O, ++i) {
      const int64_t lo = std::max(o0, base) - base, hi = std::min(o1, base + ps[i].O) - base;
      if (lo >= hi) continue;
      switch (R) {
        case 1: Rows::template run<1>(ps[i], lo, hi); break;
        case 2: Rows::template run<2>(ps[i], lo, hi); break;
        case 3: Rows::template run<3>(ps[i], lo, hi); break;
        default: Rows::template run<4>(ps[i], lo, hi); break;
      }
    }
  });
}

// y_i = x @ W_i^T through run_many: one output [..., O_i] in x's options per weight, and
// make(i, x contiguous, y_i) builds weight i's policy. Biases are the caller's.
template <class P, class Rows = WidenedRows<P>, class MakePolicy>
std::vector<at::Tensor> run_weights(const at::Tensor& x, const std::vector<at::Tensor>& Ws, int64_t R, MakePolicy make) {
  const auto xc = x.contiguous();
  std::vector<at::Tensor> ys;
  std::vector<P> ps;
  for (size_t i = 0; i < Ws.size(); ++i) {
    auto sizes = x.sizes().vec();
    sizes.back() = Ws[i].size(0);
    ys.push_back(at::empty(sizes, x.options()));
    ps.push_back(make(i, xc, ys.back()));
  }
  run_many<P, Rows>(ps.data(), ps.size(), R);
  return ys;
}

#pragma GCC diagnostic pop

}  // namespace omni::nn::row_kernel
