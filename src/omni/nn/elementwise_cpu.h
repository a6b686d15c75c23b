// Fused CPU kernels for a layer's elementwise steps in inference: RMSNorm, SiLU(gate)·up, the
// tanh-GELU and the bf16 LayerNorm, one pass each instead of libtorch's chain of ops (RMSNorm:
// widen, square, mean, add, rsqrt, multiply, narrow, scale: 8 passes and 5 temporaries; bf16
// SiLU·up: widen, silu, narrow, multiply; bf16 GELU: widen, gelu, narrow; fp32 GELU: libtorch
// 1.13's tanh-GELU kernel, ~6x slower than one pass; bf16 LayerNorm: widen, norm, narrow).
// Internal to src/omni/nn (llama.cpp, siglip_navit.cpp, layer_norm.h).
//
// They run only under c10::InferenceMode (as attention_tiles.h): a training run's no-grad forwards
// must round as their recomputation under autograd does. Each returns false, touching nothing,
// where it does not apply (outside InferenceMode, another device or dtype, non-contiguous input,
// no AVX-512F on this CPU; the LayerNorm also needs BW and VL for its masked 16-bit tails).
#pragma once
#include <ATen/ATen.h>

namespace omni::nn {

// out = weight * (x * r) with r = 1 / sqrt(sum(x²) / C + eps) per row of C = x.size(-1), fp32 inside;
// bf16 rounds as the module does: round(weight * round(x * r)). x and weight of one dtype.
// Differs from the op chain only in the order of the row's sum (1 ulp of r at most).
bool rms_norm_rows(const at::Tensor& x, const at::Tensor& weight, double eps, at::Tensor& out);

// out = LayerNorm of the last dim of a bf16 x with bf16 weight and bias, in fp32 and rounded once:
// the mean, the variance about it, then (x * rstd - mean * rstd) * w + b. Differs from
// torch::layer_norm on the fp32 widening (layer_norm.h's other route) only in the order of the
// row's sums: a rare element one bf16 step off. One pass over memory where that route takes four
// (widen, two in the kernel, narrow): BAGEL's ViT at 4900 patches 4.8 -> ~1 ms a norm.
bool layer_norm_rows(const at::Tensor& x, const at::Tensor& weight, const at::Tensor& bias, double eps,
                     at::Tensor& out);

// gate = silu(gate) * up in place. fp32: libtorch's silu_ and mul_ in place (bit-identical to the
// op chain, without its temporaries). bf16: one fused pass, round(round(silu(g)) * u) with silu in
// fp32 as x / (1 + exp(-x)) (exp: bf16_simd.h's, within 1 ulp of libtorch's, so a rounded value
// may differ by one bf16 step in ~1 element in 10^5).
bool silu_mul_(at::Tensor& gate, const at::Tensor& up);

// out = gelu(x, "tanh") of an fp32 or bf16 x, computed in fp32 and rounded once (bf16: as
// in_fp32_on_cpu, fp32_math.h, does). 0.5 x (1 + tanh(y)) is evaluated as x / (1 + exp(-2y)), the
// same function without the cancellation in 1 + tanh(y) for negative x: within 2e-6 of the fp64
// value (relative) where |gelu| > 1e-6, and for bf16 the exact value rounded but for a rare element
// one step off. libtorch's chain (and a GPU's) agrees where |gelu| is above ~0.05 (fp32: to a few
// ulps); below it, at x < ~-2, its cancellation leaves the tiny values far from the exact ones (up
// to tens of bf16 steps; fp32: 7% relative at |gelu| = 1e-6). 1369 x 4304 on 2 threads: fp32
// 7.5 -> 1.2 ms, bf16 9.7 -> 1.4 ms. libtorch's exact (erf) GELU is as fast as a fused pass
// here (1.9 ms fp32, 1.8 bf16) and stays libtorch's.
bool gelu_tanh(const at::Tensor& x, at::Tensor& out);

}  // namespace omni::nn
