// bf16 matmul weights laid out for oneDNN at memory speed (linear_onednn.cpp). Include only under
// OMNI_HAVE_ONEDNN. Internal to src/omni/nn.
//
// Why: oneDNN 2.6's reorder into its bf16 matmul's blocked weights ran at 3-12 GB/s on the 2-core
// Zen 5 (1 MB of weights: ~0.1-0.3 ms), and a tower's linears pack their weights on every call (a
// ViT's linears run once an image, so a packed copy kept between calls would only move the cost to
// the load, and double the tower's memory). Per layer that was 3.3 ms of BAGEL's 76 ms NaViT layer
// at 1369 patches and 5.1 ms of Janus's ~29 ms SigLIP-L layer at 576 (see the README).
#pragma once
#include <oneapi/dnnl/dnnl.hpp>

#include <cstdint>

namespace omni::nn::onednn {

// Wᵀ [K, N] (row-major bf16 bits at `wt`, the transposed storage of a [N, K] weight) written into
// `out` (md.get_size() bytes) in md's layout, where md is oneDNN's blocked family "(A)a(B)b2a" over
// [K, N]: pairs of K rows interleaved element by element in blocks of 2A x B, the outer blocks in
// either order, padding zero-filled. A permutation of the weights: oneDNN's reorder writes the same
// bytes. False, `out` untouched, for any other layout (and under oneDNN 3's API, whose memory
// descriptor this does not read yet): the caller reorders with oneDNN then.
bool pack_bf16_kpairs(const uint16_t* wt, int64_t K, int64_t N, const dnnl::memory::desc& md, void* out);

}  // namespace omni::nn::onednn
