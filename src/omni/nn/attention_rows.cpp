// Few-row attention over a key/value cache. See attention_rows.h.
#include "omni/nn/attention_rows.h"

#include <ATen/Parallel.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <vector>

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
};

// scores -> softmax -> weighted sum of values for one kv head; `p` [rows, S] and `acc` [rows, D]
// are the caller's scratch. T: the keys' and values' dtype, O: the output's (q's).
template <typename T, typename O>
inline __attribute__((always_inline)) void block_body(const Block& b, float* p, float* acc) {
  const T* K = static_cast<const T*>(b.k);
  const T* V = static_cast<const T*>(b.v);
  const int64_t S = b.S, D = b.D;
  const float neg_inf = -std::numeric_limits<float>::infinity();
  for (int64_t s = 0; s < S; ++s) {
    const T* kr = K + s * D;
    for (int64_t r = 0; r < b.rows; ++r) p[r * S + s] = dot(b.q + r * D, kr, D) * b.scale;
  }
  for (int64_t r = 0; r < b.rows; ++r) {
    float* pr = p + r * S;
    const int64_t t = r % b.Tq;
    if (b.mask)
      for (int64_t s = 0; s < S; ++s) pr[s] += b.mask[t * S + s];
    else if (b.causal)
      for (int64_t s = S - b.Tq + t + 1; s < S; ++s) pr[s] = neg_inf;
    float mx = neg_inf;
    for (int64_t s = 0; s < S; ++s) mx = std::max(mx, pr[s]);
    float sum = 0.f;
    for (int64_t s = 0; s < S; ++s) sum += (pr[s] = std::exp(pr[s] - mx));
    const float inv = 1.f / sum;
    for (int64_t s = 0; s < S; ++s) pr[s] *= inv;
  }
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
  O* out = static_cast<O*>(b.out);
  for (int64_t i = 0; i < b.rows * D; ++i) store(out + i, acc[i]);
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

template <typename T, typename O>
void run_block(const Block& b, float* p, float* acc) {
#if defined(__GNUC__) && defined(__x86_64__)
  static const int isa = __builtin_cpu_supports("avx512f")                                      ? 2
                         : __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") ? 1
                                                                                            : 0;
  if (isa == 2) return block_avx512<T, O>(b, p, acc);
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
      if (kv == torch::kFloat32) run_block<float, float>(blk, p.data(), acc.data());
      else if (dt == torch::kFloat32) run_block<bf16, float>(blk, p.data(), acc.data());
      else run_block<bf16, bf16>(blk, p.data(), acc.data());
    }
  });
  return out;
}

}  // namespace omni::nn
