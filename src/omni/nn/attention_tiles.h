// Attention for many query rows on the CPU in inference (ViT / NaViT encoders, flow steps over
// thousands of image tokens, long prefills), in tiles of query rows.
#pragma once
#include <ATen/ATen.h>

namespace omni::nn {

// attention() for q [B, H, Tq, D] over k, v [B, kvH, S, D], fp32 or bf16 on the CPU, under
// c10::InferenceMode (every inference entry point sets it). Not merely without autograd: a training
// run's no-grad forwards (FSDP's, recomputed under autograd for the backward; frozen encoders) must
// round exactly as the batched route does under autograd, or 2 processes would not equal 1.
// The work is split into (batch, head, block of query rows) tiles, one tile per thread at a time:
// a tile's scores are computed, soft-maxed in place and multiplied by V while they are still in
// cache, and the threads work on separate tiles instead of splitting each batched GEMM between
// them. The arithmetic is attention()'s: fp32 scores scaled after q·k (inside the one-pass softmax
// of softmax_cpu.h, or before an additive mask) and an fp32 softmax; bf16 with q prescaled and the
// same one-pass softmax, rounded once. `mask` ([B|1, 1, Tq, S], additive, in
// q's dtype) or `causal` (bottom-right) as attention(); a tile reads only the keys its rows see.
// The GEMMs: where every block reads every key, oneDNN's with K and V packed once per head
// (attention_tiles_onednn.h), from 64 query rows; otherwise at::mm, from 64 (fp32) or 512 (bf16)
// rows. Returns an undefined tensor where it does not apply (another dtype or device, fewer rows,
// or outside InferenceMode).
//
// Why: with 72- or 128-wide heads the batched score and P·V GEMMs ran at 0.6 (bf16) and 0.5 (fp32)
// of the GEMM rate, the scores round-tripping through memory between three passes: NaViT 980²
// (16 heads x 4900 patches) 433 -> 353 ms bf16 and 1024 -> 812 ms fp32 a layer; BAGEL's 1024² flow
// attention (28 heads, 4098 rows x 4128 keys) 747 -> 667 and 1673 -> 1525 ms (2 threads).
at::Tensor attention_tiles(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, double scale, bool causal,
                           const at::Tensor& mask);

}  // namespace omni::nn
