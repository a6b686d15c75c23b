// Whether this CPU has kernels made for bf16 GEMMs, which decides how --dtype bf16 runs on it.
#pragma once

namespace omni::nn {

// oneDNN's bf16 matmul, which libtorch's CPU bf16 matmul, linear and convolution call, needs
// AVX-512 with BW, VL and DQ (oneDNN's "avx512_core"; AVX512-BF16 / AMX make it faster still).
// Without it libtorch 1.13 runs bf16 GEMMs in a generic loop that is slower than its fp32 sgemm
// and, summing in bf16, far less exact: on a 2-core AVX2 EPYC a 2048^3 bf16 GEMM ran at a small
// fraction of the fp32 rate (README, "bf16 on CPUs without bf16 GEMM kernels") and a bf16 Janus
// tower's features drifted 5e-2 (rel. L2) from fp32, against 7.5e-3 on an AVX-512 CPU.
// There, --dtype bf16 stores the decoder-layer linears and vocabulary tables bf16 and computes in
// fp32 (linear.h compute_dtype), as --dtype int8 does; bf16 attention and bf16 linears that still
// come along (training in bf16, direct calls) widen to fp32.
// OMNI_NO_BF16_GEMM=1 in the environment answers false on any CPU (to run that route anywhere).
bool cpu_has_bf16_gemm();

}  // namespace omni::nn
