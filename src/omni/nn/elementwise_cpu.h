// Fused CPU kernels for a layer's elementwise steps in inference: RMSNorm, SiLU(gate)·up and the
// bf16 tanh-GELU, one pass each instead of libtorch's chain of ops (RMSNorm: widen, square, mean,
// add, rsqrt, multiply, narrow, scale: 8 passes and 5 temporaries; bf16 SiLU·up: widen, silu,
// narrow, multiply; bf16 GELU: widen, gelu, narrow). Internal to src/omni/nn (llama.cpp,
// siglip_navit.cpp).
//
// Both run only under c10::InferenceMode (as attention_tiles.h): a training run's no-grad forwards
// must round as their recomputation under autograd does. Each returns false, touching nothing,
// where it does not apply (outside InferenceMode, another device or dtype, non-contiguous input,
// no AVX-512F on this CPU).
#pragma once
#include <ATen/ATen.h>

namespace omni::nn {

// out = weight * (x * r) with r = 1 / sqrt(sum(x²) / C + eps) per row of C = x.size(-1), fp32 inside;
// bf16 rounds as the module does: round(weight * round(x * r)). x and weight of one dtype.
// Differs from the op chain only in the order of the row's sum (1 ulp of r at most).
bool rms_norm_rows(const at::Tensor& x, const at::Tensor& weight, double eps, at::Tensor& out);

// gate = silu(gate) * up in place. fp32: libtorch's silu_ and mul_ in place (bit-identical to the
// op chain, without its temporaries). bf16: one fused pass, round(round(silu(g)) * u) with silu in
// fp32 as x / (1 + exp(-x)) (exp: bf16_simd.h's, within 1 ulp of libtorch's, so a rounded value
// may differ by one bf16 step in ~1 element in 10^5).
bool silu_mul_(at::Tensor& gate, const at::Tensor& up);

// out = gelu(x, "tanh") of a bf16 x, computed in fp32 and rounded once, as in_fp32_on_cpu
// (fp32_math.h) does. 0.5 x (1 + tanh(y)) is evaluated as x / (1 + exp(-2y)), the same function
// without the cancellation in 1 + tanh(y) for negative x: the exact value rounded to bf16 but for
// a rare element one step off. The fp32 chain (libtorch's, and a GPU's) agrees where |gelu| is
// above ~0.05; below it, at x < ~-2, the chain's cancellation leaves its tiny values up to tens
// of bf16 steps from the exact ones and ours do not. fp32 is left to libtorch (returns false).
bool gelu_tanh_bf16(const at::Tensor& x, at::Tensor& out);

}  // namespace omni::nn
