#include "omni/nn/rope.h"

#include "omni/core/error.h"
#include "omni/nn/bf16_simd.h"

#include <ATen/ExpandUtils.h>
#include <ATen/Parallel.h>
#include <c10/core/InferenceMode.h>

namespace omni::nn {

torch::Tensor rope_inv_freq(int64_t head_dim, double theta, torch::Device device) {
  check(head_dim > 0 && head_dim % 2 == 0, "rope", "head_dim must be even and positive, got " + std::to_string(head_dim));
  auto f32 = torch::TensorOptions().dtype(torch::kFloat32).device(device);
  // HF: 1.0 / (base ** (arange(0, dim, 2, int64).float() / dim)). `base ** t` is
  // tensor(base, float32) ** t; `1.0 / x` is x.reciprocal() * 1.0.
  auto exponent = torch::arange(0, head_dim, 2, torch::TensorOptions().dtype(torch::kInt64).device(device))
                      .to(torch::kFloat32) /
                  static_cast<double>(head_dim);
  auto base = torch::scalar_tensor(theta, f32);
  return torch::pow(base, exponent).reciprocal();
}

RopeCosSin rope_cos_sin(const torch::Tensor& inv_freq, const torch::Tensor& positions, torch::ScalarType dtype) {
  auto pos = positions.dim() == 1 ? positions.unsqueeze(0) : positions;  // [B, T]
  // [B, T, 1] * [1, 1, D/2]: a single float32 product per element, bit-equal to HF's K=1 matmul.
  auto freqs = pos.to(torch::kFloat32).unsqueeze(-1) * inv_freq.to(torch::kFloat32).view({1, 1, -1});
  auto emb = torch::cat({freqs, freqs}, -1);
  RopeCosSin out{emb.cos(), emb.sin()};
  if (dtype != torch::kFloat32) {
    out.cos = out.cos.to(dtype);
    out.sin = out.sin.to(dtype);
  }
  return out;
}

torch::Tensor rotate_half(const torch::Tensor& x) {
  const int64_t half = x.size(-1) / 2;
  auto x1 = x.narrow(-1, 0, half);
  auto x2 = x.narrow(-1, half, x.size(-1) - half);
  return torch::cat({-x2, x1}, -1);
}

namespace {
// One row of D = 2 * half: y = x * cos + rotate_half(x) * sin, every product and the sum rounded
// to T as the op chain's separate kernels round them (libtorch's bf16 ops compute in fp32 and
// round each result; for fp32 this file builds with -ffp-contract=off, so no FMA joins them).
// rope_row_avx512 takes 16 lanes a step (the scalar loop's bf16 rounding measured ~40 us a
// Janus-1B decode layer) and returns where rope_row's scalar tail starts; there -x2 flips the sign
// bit, as negation does (0 - x2 would turn -0 into +0), and the scalar -(x2 * s) == -x2 * s
// exactly, rounding to nearest being symmetric.
#ifdef OMNI_NN_X86_SIMD
OMNI_NN_SIMD_WARNINGS_OFF
template <class T>
__attribute__((target("avx512f"))) int64_t rope_row_avx512(const T* x, const T* c, const T* s, T* y, int64_t half) {
  using namespace simd;
  const __m512i sign = _mm512_set1_epi32(static_cast<int>(0x80000000u));
  int64_t i = 0;
  for (; i + 16 <= half; i += 16) {
    const __m512 x1 = load16(x + i), x2 = load16(x + i + half);
    const __m512 neg_x2 = _mm512_castsi512_ps(_mm512_xor_si512(_mm512_castps_si512(x2), sign));
    const __m512 a1 = stored16<T>(_mm512_mul_ps(x1, load16(c + i)));
    const __m512 b1 = stored16<T>(_mm512_mul_ps(neg_x2, load16(s + i)));
    const __m512 a2 = stored16<T>(_mm512_mul_ps(x2, load16(c + i + half)));
    const __m512 b2 = stored16<T>(_mm512_mul_ps(x1, load16(s + i + half)));
    store16(y + i, _mm512_add_ps(a1, b1));
    store16(y + i + half, _mm512_add_ps(a2, b2));
  }
  return i;
}
OMNI_NN_SIMD_WARNINGS_ON
#endif

template <class T>
void rope_row(const T* x, const T* c, const T* s, T* y, int64_t half) {
  using simd::stored;
  using simd::widen;
  int64_t i = 0;
#ifdef OMNI_NN_X86_SIMD
  if (simd::has_avx512f()) i = rope_row_avx512(x, c, s, y, half);
#endif
  for (; i < half; ++i) {
    const float x1 = widen(x[i]), x2 = widen(x[i + half]);
    const float a1 = widen(stored<T>(x1 * widen(c[i]))), b1 = widen(stored<T>(-(x2 * widen(s[i]))));
    const float a2 = widen(stored<T>(x2 * widen(c[i + half]))), b2 = widen(stored<T>(x1 * widen(s[i + half])));
    y[i] = stored<T>(a1 + b1);
    y[i + half] = stored<T>(a2 + b2);
  }
}

}  // namespace

torch::Tensor apply_rope_rows(const torch::Tensor& x, const RopeCosSin& cs) {
  const auto cos_u = cs.cos.unsqueeze(1), sin_u = cs.sin.unsqueeze(1);  // [B, 1, T, D], as apply_rope
  const auto st = x.scalar_type();
  if (!c10::InferenceMode::is_enabled() || !x.device().is_cpu() || !cos_u.device().is_cpu() ||
      !sin_u.device().is_cpu() || (st != torch::kFloat32 && st != torch::kBFloat16) || cos_u.scalar_type() != st ||
      sin_u.scalar_type() != st || x.dim() < 1 || x.numel() == 0 || x.size(-1) % 2 != 0)
    return {};
  const auto shape = x.sizes();
  if (at::infer_size(shape, cos_u.sizes()) != shape || at::infer_size(shape, sin_u.sizes()) != shape) return {};
  const auto c = cos_u.expand(shape), s = sin_u.expand(shape);  // broadcast dims: stride 0
  if (x.stride(-1) != 1 || c.stride(-1) != 1 || s.stride(-1) != 1) return {};
  auto y = torch::empty_like(x);  // x's layout where it is dense, as the chain's output
  const int64_t nd = x.dim(), D = x.size(-1), rows = x.numel() / D;
  const auto sx = x.strides(), sc = c.strides(), ss = s.strides(), sy = y.strides();
  simd::with_storage_type(st, [&](auto* tag) {
    using T = std::remove_pointer_t<decltype(tag)>;
    const T* xp = static_cast<const T*>(x.data_ptr());
    const T* cp = static_cast<const T*>(c.data_ptr());
    const T* sp = static_cast<const T*>(s.data_ptr());
    T* yp = static_cast<T*>(y.data_ptr());
    at::parallel_for(0, rows, std::max<int64_t>(1, 32768 / D), [&](int64_t r0, int64_t r1) {
      for (int64_t r = r0; r < r1; ++r) {
        int64_t ox = 0, oc = 0, os = 0, oy = 0, rest = r;  // row r's offsets: its index over dims 0..nd-2
        for (int64_t d = nd - 2; d >= 0; --d) {
          const int64_t i = rest % shape[d];
          rest /= shape[d];
          ox += i * sx[d];
          oc += i * sc[d];
          os += i * ss[d];
          oy += i * sy[d];
        }
        rope_row(xp + ox, cp + oc, sp + os, yp + oy, D / 2);
      }
    });
  });
  return y;
}

torch::Tensor apply_rope(const torch::Tensor& x, const RopeCosSin& cs) {
  auto fused = apply_rope_rows(x, cs);
  if (fused.defined()) return fused;
  auto cos = cs.cos.unsqueeze(1);  // [B, 1, T, D]
  auto sin = cs.sin.unsqueeze(1);
  return x * cos + rotate_half(x) * sin;
}

}  // namespace omni::nn
