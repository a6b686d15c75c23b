// Softmax over the last dimension of a CPU tensor, in place, for the attention's inference
// routes: one pass over each row (max, then exp and its sum, then the normalised values) with
// exp by the polynomial of bf16_simd.h, fp32 arithmetic, and one rounding to the tensor's dtype.
// libtorch 1.13's own made the attention's softmax its largest non-GEMM cost: its vectorised exp
// runs 2.4x slower than this loop (256 rows of 1369 fp32 scores, one thread: 0.31 -> 0.13 ms), and
// for bf16 it widened the scores, soft-maxed and narrowed them (three passes; NaViT's 16 x 1369 x
// 1369 scores: 13.5 ms -> 6.6 ms on 2 threads). The exp is 2^t by a degree-5 polynomial (10
// vector operations where Cephes' exp takes 14), a row's last partial vector is masked (9 scalar
// exps had cost a 1369-key row a fifth of its time) and bf16 rounds by vcvtneps2bf16 where the CPU
// has it: 256 rows of 1369 bf16 scores 0.16 -> 0.09 ms, of 4900 0.53 -> 0.29 ms, fp32 at 1369
// 0.126 -> 0.083 ms (one thread). Internal to src/omni/nn (attention.cpp, attention_tiles.cpp,
// attention_rows.cpp).
#pragma once
#include <ATen/ATen.h>

namespace omni::nn {

// Replaces each row of x (fp32 or bf16, CPU, contiguous) by softmax(scale * row): the fp32 values
// rounded once to x's dtype (bf16: libtorch's bf16 softmax and a GPU's round the same way, but for
// ~1 element in 16k one step apart). A row with a NaN, an infinite maximum or every score at
// -inf becomes NaN, as torch's softmax makes it. False, x untouched, where it does not apply
// (another dtype or device, not contiguous, or no AVX-512 F, BW and VL on this CPU).
bool softmax_lastdim_(at::Tensor& x, float scale = 1.f);

// softmax_lastdim_ of `rows` contiguous fp32 rows of S scores at p (scale 1) on the calling thread,
// for a caller already inside its own parallel loop (attention_rows' blocks). False, p untouched,
// on a CPU without AVX-512 F, BW and VL.
bool softmax_fp32_rows_here_(float* p, int64_t rows, int64_t S);

namespace detail {
// The same with bf16 rows rounded by AVX-512F integer arithmetic even where the CPU has
// AVX512-BF16's vcvtneps2bf16, so that a test covers the route of CPUs without it.
bool softmax_lastdim_without_bf16_cvt_(at::Tensor& x, float scale = 1.f);
}  // namespace detail

}  // namespace omni::nn
