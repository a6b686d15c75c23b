// An elementwise op of a bf16 / fp16 CPU tensor computed in fp32 and rounded once, as a GPU
// computes it (the official bf16 runs). libtorch 1.13's CPU bf16 kernels round otherwise: its
// SiLU gave the exactly rounded value in 71% of the elements (fp32 then round: all of them) and
// its tanh-GELU differed from fp32 then round in 45%; both are slower too (SiLU 628 x 5632:
// 3.55 -> 3.40 ms; tanh-GELU 1369 x 4304: 16.7 -> 9.9 ms; 2 threads). Other dtypes and devices
// run `op` as they are.
#pragma once
#include <ATen/ATen.h>

namespace omni::nn {

template <class Op>
at::Tensor in_fp32_on_cpu(const at::Tensor& x, Op op) {
  const auto dt = x.scalar_type();
  if (x.device().is_cpu() && (dt == at::kBFloat16 || dt == at::kHalf)) return op(x.to(at::kFloat)).to(dt);
  return op(x);
}

}  // namespace omni::nn
