// Few-row attention over a key/value cache. See attention_rows.h.
#include "omni/nn/attention_rows.h"

#include <ATen/Parallel.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <vector>

#include "omni/nn/bf16_simd.h"
#include "omni/nn/softmax_cpu.h"

namespace omni::nn {
namespace {

using bf16 = uint16_t;  // raw bits: the upper half of an fp32

inline __attribute__((always_inline)) float to_f(float x) { return x; }
inline __attribute__((always_inline)) float to_f(bf16 h) {
  const uint32_t u = static_cast<uint32_t>(h) << 16;
  float f;
  std::memcpy(&f, &u, sizeof f);
  return f;
}
inline void store(float* p, float v) { *p = v; }
inline void store(bf16* p, float v) {
  const c10::BFloat16 b(v);  // round to nearest even
  std::memcpy(p, &b, sizeof *p);
}

// 16 independent lanes, so the compiler vectorises without reassociating a float sum.
template <typename T>
inline __attribute__((always_inline)) float dot(const float* a, const T* b, int64_t D) {
  float acc[16] = {};
  int64_t d = 0;
  for (; d + 16 <= D; d += 16)
    for (int j = 0; j < 16; ++j) acc[j] += a[d + j] * to_f(b[d + j]);
  float s = 0.f;
  for (int j = 0; j < 16; ++j) s += acc[j];
  for (; d < D; ++d) s += a[d] * to_f(b[d]);
  return s;
}

struct Block {
  const float* q;     // [rows, D] fp32: the G heads x Tq queries of one kv head
  const void* k;      // [S, D] rows of this kv head
  const void* v;
  const float* mask;  // [Tq, S] or null
  void* out;          // [rows, D] in the output dtype (contiguous within the block)
  int64_t rows, Tq, S, D;
  float scale;
  bool causal;
  const void* next_k = nullptr;  // the keys of the block this thread takes next, or null
};

// Row r's mask (or causal limit) added to its scores pr [S].
inline __attribute__((always_inline)) void mask_row(const Block& b, int64_t r, float* pr) {
  const int64_t S = b.S, t = r % b.Tq;
  if (b.mask)
    for (int64_t s = 0; s < S; ++s) pr[s] += b.mask[t * S + s];
  else if (b.causal)
    for (int64_t s = S - b.Tq + t + 1; s < S; ++s) pr[s] = -std::numeric_limits<float>::infinity();
}

// Softmax of one row of S scores, in place.
inline __attribute__((always_inline)) void softmax_row(float* pr, int64_t S) {
  float mx = -std::numeric_limits<float>::infinity();
  for (int64_t s = 0; s < S; ++s) mx = std::max(mx, pr[s]);
  float sum = 0.f;
  for (int64_t s = 0; s < S; ++s) sum += (pr[s] = std::exp(pr[s] - mx));
  const float inv = 1.f / sum;
  for (int64_t s = 0; s < S; ++s) pr[s] *= inv;
}

// Masks and softmax over the scores p [rows, S], in place.
inline __attribute__((always_inline)) void softmax_rows(const Block& b, float* p) {
  for (int64_t r = 0; r < b.rows; ++r) {
    mask_row(b, r, p + r * b.S);
    softmax_row(p + r * b.S, b.S);
  }
}

template <typename O>
inline __attribute__((always_inline)) void store_rows(const Block& b, const float* acc) {
  O* out = static_cast<O*>(b.out);
  for (int64_t i = 0; i < b.rows * b.D; ++i) store(out + i, acc[i]);
}

// scores -> softmax -> weighted sum of values for one kv head; `p` [rows, S] and `acc` [rows, D]
// are the caller's scratch. T: the keys' and values' dtype, O: the output's (q's).
template <typename T, typename O>
inline __attribute__((always_inline)) void block_body(const Block& b, float* p, float* acc) {
  const T* K = static_cast<const T*>(b.k);
  const T* V = static_cast<const T*>(b.v);
  const int64_t S = b.S, D = b.D;
  for (int64_t s = 0; s < S; ++s) {
    const T* kr = K + s * D;
    for (int64_t r = 0; r < b.rows; ++r) p[r * S + s] = dot(b.q + r * D, kr, D) * b.scale;
  }
  softmax_rows(b, p);
  std::fill(acc, acc + b.rows * D, 0.f);
  for (int64_t s = 0; s < S; ++s) {
    const T* vr = V + s * D;
    for (int64_t r = 0; r < b.rows; ++r) {
      const float w = p[r * S + s];
      if (w == 0.f) continue;  // masked keys
      float* ar = acc + r * D;
      for (int64_t d = 0; d < D; ++d) ar[d] += w * to_f(vr[d]);
    }
  }
  store_rows<O>(b, acc);
}

template <typename T, typename O>
void block_generic(const Block& b, float* p, float* acc) {
  block_body<T, O>(b, p, acc);
}
#if defined(__GNUC__) && defined(__x86_64__)
template <typename T, typename O>
__attribute__((target("avx2,fma"))) void block_avx2(const Block& b, float* p, float* acc) {
  block_body<T, O>(b, p, acc);
}
template <typename T, typename O>
__attribute__((target("avx512f"))) void block_avx512(const Block& b, float* p, float* acc) {
  block_body<T, O>(b, p, acc);
}
#endif

#ifdef OMNI_NN_X86_SIMD
OMNI_NN_SIMD_WARNINGS_OFF
using simd::load16;
// One row of D elements into L2 ahead of its use.
template <typename T>
__attribute__((always_inline)) inline void prefetch_row(const T* row, int64_t D) {
  for (int64_t i = 0; i < D * static_cast<int64_t>(sizeof(T)); i += 64)
    _mm_prefetch(reinterpret_cast<const char*>(row) + i, _MM_HINT_T1);
}

// block_body for D = 16 * ND (ND <= 8) on AVX-512: a key's or value's D elements are ND registers,
// loaded once for every query row; the value sums of two rows at a time stay in registers; each
// score is a 16-lane FMA sum and one reduction, and the softmax runs 16 lanes a step
// (softmax_cpu.h's row loop, exp by the 2^t polynomial: ~1e-7 from std::exp). The values
// are prefetched while the keys are scored and the next block's keys while the values are summed,
// so a block's two streams overlap and the next one starts warm. Where block_avx512 was the
// compiler's 8-lane loop, a multiply and an add per element, a scalar 16-step sum per score and
// the value sums stored and reloaded per key. A Janus-1B CFG pair (2 x 16 heads, D = 128, bf16):
// over 301 keys, 24 layers in turn 203-245 -> 125-132 us a layer (hot caches: 141-173 -> 59);
// inside a whole 24-layer step 203 -> 139 us a layer (33 keys: 76 -> 40; 600 keys stand-alone:
// 343-402 -> 225). The same sums in another order, fused; within fp32 rounding of block_body.
template <int ND, typename T, typename O>
__attribute__((target("avx512f,fma"))) void block_avx512_d16(const Block& b, float* p, float* acc) {
  const T* K = static_cast<const T*>(b.k);
  const T* V = static_cast<const T*>(b.v);
  const int64_t S = b.S, R = b.rows, D = 16 * ND;
  for (int64_t s = 0; s < S; ++s) {
    prefetch_row(V + s * D, D);
    __m512 kv[ND];
    for (int j = 0; j < ND; ++j) kv[j] = load16(K + s * D + 16 * j);
    for (int64_t r = 0; r < R; ++r) {
      const float* qr = b.q + r * D;
      __m512 a0 = _mm512_setzero_ps(), a1 = _mm512_setzero_ps();
      for (int j = 0; j < ND; j += 2) {
        a0 = _mm512_fmadd_ps(_mm512_loadu_ps(qr + 16 * j), kv[j], a0);
        if (j + 1 < ND) a1 = _mm512_fmadd_ps(_mm512_loadu_ps(qr + 16 * j + 16), kv[j + 1], a1);
      }
      p[r * S + s] = _mm512_reduce_add_ps(_mm512_add_ps(a0, a1)) * b.scale;
    }
  }
  // the softmax 16 lanes a step (softmax_cpu.h), where the CPU has AVX-512 BW and VL
  for (int64_t r = 0; r < R; ++r) mask_row(b, r, p + r * S);
  if (!softmax_fp32_rows_here_(p, R, S))
    for (int64_t r = 0; r < R; ++r) softmax_row(p + r * S, S);
  const T* next = static_cast<const T*>(b.next_k);
  for (int64_t r0 = 0; r0 < R; r0 += 2) {
    const bool two = r0 + 1 < R;
    __m512 a[2][ND];
    for (int i = 0; i < 2; ++i)
      for (int j = 0; j < ND; ++j) a[i][j] = _mm512_setzero_ps();
    for (int64_t s = 0; s < S; ++s) {
      if (next && r0 == 0) prefetch_row(next + s * D, D);
      __m512 vv[ND];
      for (int j = 0; j < ND; ++j) vv[j] = load16(V + s * D + 16 * j);
      const __m512 w0 = _mm512_set1_ps(p[r0 * S + s]);
      for (int j = 0; j < ND; ++j) a[0][j] = _mm512_fmadd_ps(w0, vv[j], a[0][j]);
      if (two) {
        const __m512 w1 = _mm512_set1_ps(p[(r0 + 1) * S + s]);
        for (int j = 0; j < ND; ++j) a[1][j] = _mm512_fmadd_ps(w1, vv[j], a[1][j]);
      }
    }
    for (int i = 0; i < (two ? 2 : 1); ++i)
      for (int j = 0; j < ND; ++j) _mm512_storeu_ps(acc + (r0 + i) * D + 16 * j, a[i][j]);
  }
  store_rows<O>(b, acc);
}
OMNI_NN_SIMD_WARNINGS_ON
#endif

template <typename T, typename O>
void run_block(const Block& b, float* p, float* acc) {
#if defined(__GNUC__) && defined(__x86_64__)
  static const int isa = __builtin_cpu_supports("avx512f")                                      ? 2
                         : __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") ? 1
                                                                                            : 0;
  if (isa == 2) {
    switch (b.D) {
      case 16: return block_avx512_d16<1, T, O>(b, p, acc);
      case 32: return block_avx512_d16<2, T, O>(b, p, acc);
      case 64: return block_avx512_d16<4, T, O>(b, p, acc);
      case 128: return block_avx512_d16<8, T, O>(b, p, acc);
      default: return block_avx512<T, O>(b, p, acc);
    }
  }
  if (isa == 1) return block_avx2<T, O>(b, p, acc);
#endif
  block_generic<T, O>(b, p, acc);
}

bool rows_of_d(const torch::Tensor& t) { return t.stride(3) == 1 && t.stride(2) == t.size(3); }

}  // namespace

torch::Tensor attention_rows(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v, double scale,
                             bool causal, const torch::Tensor& mask) {
  if (q.dim() != 4 || k.dim() != 4 || v.sizes() != k.sizes()) return {};
  const auto dt = q.scalar_type(), kv = k.scalar_type();
  const auto fp32_or_bf16 = [](c10::ScalarType t) { return t == torch::kFloat32 || t == torch::kBFloat16; };
  // fp32 queries over a bf16 cache too (bf16 weights over fp32 compute: kv_cache.h)
  if (!fp32_or_bf16(dt) || !fp32_or_bf16(kv) || v.scalar_type() != kv || (dt == torch::kBFloat16 && kv != dt)) return {};
  if (!q.device().is_cpu() || !k.device().is_cpu() || !v.device().is_cpu()) return {};
  if (q.requires_grad() || k.requires_grad() || v.requires_grad()) return {};
  const int64_t B = q.size(0), H = q.size(1), Tq = q.size(2), D = q.size(3);
  const int64_t kvH = k.size(1), S = k.size(2);
  if (Tq < 1 || Tq > 8 || S < Tq || k.size(0) != B || k.size(3) != D || kvH < 1 || H % kvH) return {};
  if (!rows_of_d(k) || !rows_of_d(v)) return {};
  torch::Tensor m;
  if (mask.defined()) {
    if (mask.dim() != 4 || mask.size(1) != 1 || mask.size(2) != Tq || mask.size(3) != S ||
        (mask.size(0) != 1 && mask.size(0) != B))
      return {};
    m = mask.to(torch::kFloat32).contiguous();
  }
  const int64_t G = H / kvH, rows = G * Tq;
  auto qf = q.to(torch::kFloat32).contiguous();  // [B, H, Tq, D]: a kv head's G x Tq rows are adjacent
  auto out = torch::empty({B, H, Tq, D}, q.options());
  const float* qp = qf.data_ptr<float>();
  const float* mp = m.defined() ? m.data_ptr<float>() : nullptr;
  const int64_t esz = static_cast<int64_t>(k.element_size()), osz = static_cast<int64_t>(out.element_size());
  const auto* kp = static_cast<const char*>(k.data_ptr());
  const auto* vp = static_cast<const char*>(v.data_ptr());
  auto* op = static_cast<char*>(out.data_ptr());
  at::parallel_for(0, B * kvH, 1, [&](int64_t i0, int64_t i1) {
    std::vector<float> p(rows * S), acc(rows * D);
    for (int64_t i = i0; i < i1; ++i) {
      const int64_t b = i / kvH, h = i % kvH;
      Block blk;
      blk.q = qp + (b * H + h * G) * Tq * D;
      blk.k = kp + (b * k.stride(0) + h * k.stride(1)) * esz;
      blk.v = vp + (b * v.stride(0) + h * v.stride(1)) * esz;
      blk.mask = mp ? mp + (m.size(0) == 1 ? 0 : b) * Tq * S : nullptr;
      blk.out = op + (b * H + h * G) * Tq * D * osz;
      blk.rows = rows;
      blk.Tq = Tq;
      blk.S = S;
      blk.D = D;
      blk.scale = static_cast<float>(scale);
      blk.causal = causal && !mp;
      if (i + 1 < i1) blk.next_k = kp + ((i + 1) / kvH * k.stride(0) + (i + 1) % kvH * k.stride(1)) * esz;
      if (kv == torch::kFloat32) run_block<float, float>(blk, p.data(), acc.data());
      else if (dt == torch::kFloat32) run_block<bf16, float>(blk, p.data(), acc.data());
      else run_block<bf16, bf16>(blk, p.data(), acc.data());
    }
  });
  return out;
}

}  // namespace omni::nn
