// Whether this CPU has kernels made for bf16 GEMMs, which decides how --dtype bf16 runs on it.
#pragma once

namespace omni::nn {

// oneDNN's bf16 matmul, which libtorch's CPU bf16 matmul, linear and convolution call, needs
// AVX-512 with BW, VL and DQ (oneDNN's "avx512_core"; AVX512-BF16 / AMX make it faster still).
// Without it libtorch 1.13 runs bf16 GEMMs in a generic loop that is slower than its fp32 sgemm
// and, summing in bf16, far less exact: on a 2-core AVX2 EPYC a 1024^3 bf16 GEMM ran at 4.6
// GFLOP/s against sgemm's 142, 3.7e-2 off the exact product against 1.7e-3 for the same inputs
// widened, multiplied in fp32 and rounded once (README, "bf16 on a CPU without bf16 GEMM
// kernels"), and the tiny Janus's bf16 tower features drifted 5e-2 from fp32 (7.5e-3 on AVX-512).
// There, --dtype bf16 stores the decoder-layer linears and vocabulary tables bf16 and computes in
// fp32 (linear.h compute_dtype), as --dtype int8 does; bf16 attention and bf16 linears that still
// come along (training in bf16, direct calls) widen to fp32.
// OMNI_NO_BF16_GEMM=1 in the environment answers false on any CPU (to run that route anywhere).
bool cpu_has_bf16_gemm();

}  // namespace omni::nn
