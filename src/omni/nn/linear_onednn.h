// bf16 linear layers of many rows through oneDNN's matmul with the weight packed on each call.
// Internal to src/omni/nn (linear.cpp's linear_rows).
//
// Why: libtorch 1.13's bf16 linear hands oneDNN the weight in its plain layout, and the kernel
// oneDNN picks for that layout ran at 0.88-0.98 of the square GEMM rate (and slower still at some
// row counts; linear.cpp pads those). Reordered into the layout oneDNN asks for, the same GEMM ran
// at 1.04-1.08, the reorder included, with the same results bit for bit (2 threads, best of 10):
// 4900 x 1152 -> 4304 137 -> 117 ms, 4900 x 4304 -> 1152 137 -> 115, 4900 x 1152 -> 1152 32.2 ->
// 29.5, 1369 x 1152 -> 4304 34.2 -> 32.6, BAGEL's flow MLP 4098 x 3584 -> 18944 1404 -> 1327. The
// reorder from the checkpoint's [N, K] layout runs at ~4 GB/s, so below ~1000 rows it costs more
// than it gains (576 x 4096 -> 1024: 11.5 -> 13.6 ms). A weight stored transposed (the vision
// towers' in inference, nn::store_linear_weights_transposed) is laid out by onednn_pack.h at 24-45
// GB/s where oneDNN's reorder ran at 7-14 (Janus's SigLIP-L, 24 layers of 576 rows, 636 -> 616 ms;
// BAGEL's NaViT + connector at 1369 patches 2270 -> 2230 ms) and pays from 384 rows (level with
// torch's linear at 256 rows, 1.06-1.12x at 384, 1.00-1.14x at 512); 512 where the packer does not
// know the layout oneDNN asks for and its reorder runs.
#pragma once
#include <ATen/ATen.h>

namespace omni::nn::detail {

// Whether this build has oneDNN (CMake's OMNI_ONEDNN; see the README), for the packed GEMMs here
// and in attention_tiles_onednn.h.
bool onednn_built();

// x [..., K] @ W [N, K]ᵀ + bias [N] (bias may be undefined), all bf16 on the CPU without autograd,
// W contiguous (from 1024 rows) or the transpose of a contiguous [K, N] (from 384 rows). Undefined
// where it does not apply (or oneDNN is not built in).
at::Tensor bf16_linear_packed(const at::Tensor& x, const at::Tensor& W, const at::Tensor& bias);

// The bytes bf16_linear_packed hands oneDNN as W for `rows` rows (W bf16, contiguous or the
// transpose of a contiguous [K, N]): laid out by onednn_pack.h from the transposed storage (`own`)
// or by oneDNN's reorder. Undefined where oneDNN is not built in, the CPU has no bf16 GEMM
// kernels, or (own) W is not stored transposed or the packer does not know the layout. For the
// tests: the two are equal byte for byte.
at::Tensor bf16_packed_weight_bytes(const at::Tensor& W, int64_t rows, bool own);

}  // namespace omni::nn::detail
