// See onednn_pack.h. Compiled empty without oneDNN (CMake's OMNI_ONEDNN).
#ifdef OMNI_HAVE_ONEDNN
#include "omni/nn/onednn_pack.h"

#include <ATen/Parallel.h>

#include <algorithm>

#include "omni/nn/bf16_simd.h"

namespace omni::nn::onednn {

namespace {

// The blocked layout of a 2-d descriptor: padded dims, the outer blocks' strides (elements) and the
// inner blocks, outermost first.
struct Blocking2d {
  int64_t padded[2] = {0, 0}, strides[2] = {0, 0};
  int nblks = 0;
  int64_t blks[12] = {};
  int64_t idxs[12] = {};
};

bool blocking_of(const dnnl::memory::desc& md, Blocking2d& b) {
#if DNNL_VERSION_MAJOR >= 3
  (void)md, (void)b;
  return false;
#else
  const dnnl_memory_desc_t& d = md.data;
  if (d.ndims != 2 || d.format_kind != dnnl_blocked || d.offset0 != 0 || d.extra.flags != 0) return false;
  const auto& bl = d.format_desc.blocking;
  if (bl.inner_nblks > 12) return false;
  for (int i = 0; i < 2; ++i) b.padded[i] = d.padded_dims[i], b.strides[i] = bl.strides[i];
  b.nblks = bl.inner_nblks;
  for (int i = 0; i < b.nblks; ++i) b.blks[i] = bl.inner_blks[i], b.idxs[i] = bl.inner_idxs[i];
  return true;
#endif
}

// One 2A x B block row pair p: dst[2j] = row0[j], dst[2j + 1] = row1[j] for j < n, zeros past n
// and for a missing row (past K).
void interleave_scalar(const uint16_t* row0, const uint16_t* row1, int64_t n, int64_t B, uint16_t* dst) {
  for (int64_t j = 0; j < B; ++j) {
    dst[2 * j] = row0 && j < n ? row0[j] : 0;
    dst[2 * j + 1] = row1 && j < n ? row1[j] : 0;
  }
}

#ifdef OMNI_NN_X86_SIMD
OMNI_NN_SIMD_WARNINGS_OFF
// The same for B a multiple of 32 with both rows whole: 32 + 32 elements in, 64 out a step.
__attribute__((target("avx512f,avx512bw"))) void interleave_avx512(const uint16_t* row0, const uint16_t* row1,
                                                                     int64_t B, uint16_t* dst) {
  alignas(64) static const uint16_t lo_idx[32] = {0, 32, 1, 33, 2, 34, 3, 35, 4, 36, 5, 37, 6, 38, 7, 39,
                                                  8, 40, 9, 41, 10, 42, 11, 43, 12, 44, 13, 45, 14, 46, 15, 47};
  alignas(64) static const uint16_t hi_idx[32] = {16, 48, 17, 49, 18, 50, 19, 51, 20, 52, 21, 53, 22, 54, 23, 55,
                                                  24, 56, 25, 57, 26, 58, 27, 59, 28, 60, 29, 61, 30, 62, 31, 63};
  const __m512i lo = _mm512_load_si512(lo_idx), hi = _mm512_load_si512(hi_idx);
  for (int64_t j = 0; j < B; j += 32) {
    const __m512i a = _mm512_loadu_si512(row0 + j), b = _mm512_loadu_si512(row1 + j);
    _mm512_storeu_si512(dst + 2 * j, _mm512_permutex2var_epi16(a, lo, b));
    _mm512_storeu_si512(dst + 2 * j + 32, _mm512_permutex2var_epi16(a, hi, b));
  }
}
OMNI_NN_SIMD_WARNINGS_ON
#endif

}  // namespace

bool pack_bf16_kpairs(const uint16_t* wt, int64_t K, int64_t N, const dnnl::memory::desc& md, void* out) {
  Blocking2d bl;
  if (K <= 0 || N <= 0 || !blocking_of(md, bl)) return false;
  // inner blocks A a, B b, 2 a (a = dim 0 = K, b = dim 1 = N)
  if (bl.nblks != 3 || bl.idxs[0] != 0 || bl.idxs[1] != 1 || bl.idxs[2] != 0 || bl.blks[2] != 2) return false;
  const int64_t A = bl.blks[0], B = bl.blks[1], KB = 2 * A, Kp = bl.padded[0], Np = bl.padded[1];
  if (A <= 0 || B <= 0 || Kp < K || Np < N || Kp % KB || Np % B) return false;
  const int64_t block = KB * B, kblocks = Kp / KB, nblocks = Np / B;
  // the outer blocks tile the buffer exactly, N-blocks outermost or K-blocks outermost
  const bool n_outer = bl.strides[0] == block && bl.strides[1] == kblocks * block;
  const bool k_outer = bl.strides[1] == block && bl.strides[0] == nblocks * block;
  if (!(n_outer || k_outer) || md.get_size() != static_cast<size_t>(Kp * Np) * sizeof(uint16_t)) return false;
  bool simd = false;
#ifdef OMNI_NN_X86_SIMD
  simd = simd::has_avx512bw() && B % 32 == 0;
#endif
  (void)simd;
  auto* o = static_cast<uint16_t*>(out);
  // K blocks across the threads: each reads 2A whole rows of Wᵀ in turn and writes whole blocks.
  at::parallel_for(0, kblocks, 1, [&](int64_t kb0, int64_t kb1) {
    for (int64_t kb = kb0; kb < kb1; ++kb)
      for (int64_t nb = 0; nb < nblocks; ++nb) {
        uint16_t* dst = o + kb * bl.strides[0] + nb * bl.strides[1];
        const int64_t n0 = nb * B, n = std::clamp<int64_t>(N - n0, 0, B);
        for (int64_t p = 0; p < A; ++p, dst += 2 * B) {
          const int64_t k = kb * KB + 2 * p;
          const uint16_t* row0 = k < K && n > 0 ? wt + k * N + n0 : nullptr;
          const uint16_t* row1 = k + 1 < K && n > 0 ? wt + (k + 1) * N + n0 : nullptr;
#ifdef OMNI_NN_X86_SIMD
          if (simd && row0 && row1 && n == B) {
            interleave_avx512(row0, row1, B, dst);
            continue;
          }
#endif
          interleave_scalar(row0, row1, n, B, dst);
        }
      }
  });
  return true;
}

}  // namespace omni::nn::onednn

#endif  // OMNI_HAVE_ONEDNN
