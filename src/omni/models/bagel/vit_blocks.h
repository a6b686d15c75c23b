// BAGEL's understanding-path pieces around the SigLIP encoder (ByteDance-Seed/Bagel
// modeling/bagel/modeling_utils.py: MLPconnector, PositionEmbedding, get_2d_sincos_pos_embed;
// data/data_utils.py: patchify, get_flattened_position_ids_{extrapolate,interpolate};
// modeling/bagel/bagel.py: prepare_vit_images, forward_cache_update_vit).
//
// The ViT block of the packed sequence is, per image (tokens listed row-major over the patches):
//   tokens = patchify(image [3, H, W] in [-1, 1], p)                       [n, 3p^2]
//   ids    = flattened_position_ids_extrapolate(H / p, W / p, M)          [n], row * M + col
//   x      = connector(vit_model(tokens, ids, cu_seqlens)) + vit_pos_embed(ids)
// with M = BagelConfig.vit_max_num_patch_per_side (70 released; 8 in the tiny fixture). The same
// ids index SigLIP's learned position_embedding and the fixed sin-cos vit_pos_embed table.
#pragma once
#include <torch/torch.h>

#include <string>
#include <vector>

#include "omni/nn/siglip_navit.h"

namespace omni::bagel {

// connector.{fc1, fc2}: fc2(act(fc1(x))), Linear(in -> out), Linear(out -> out); act is
// BagelConfig.connector_act ("gelu_pytorch_tanh").
class MLPconnectorImpl : public torch::nn::Module {
 public:
  MLPconnectorImpl(int64_t in_dim, int64_t out_dim, const std::string& hidden_act = "gelu_pytorch_tanh");
  torch::Tensor forward(const torch::Tensor& x);
  torch::nn::Linear fc1{nullptr}, fc2{nullptr};
  std::string act;
};
TORCH_MODULE(MLPconnector);

// data_utils.patchify: image [C, H, W] (H, W multiples of p) -> [(H/p)*(W/p), p*p*C]; patches
// row-major, each flattened in (row-in-patch, col-in-patch, channel) order (the Linear
// patch_embedding layout). Exact (a permutation). Throws omni::Error on bad shapes.
torch::Tensor patchify(const torch::Tensor& chw, int64_t p);

// get_flattened_position_ids_extrapolate, taking patch counts (the official function takes pixel
// sizes and divides by the patch size): row * max_per_side + col, int64 [h_patches * w_patches].
// Stricter than the official code: throws when a side exceeds max_per_side (the official ids
// would alias other rows).
torch::Tensor flattened_position_ids_extrapolate(int64_t h_patches, int64_t w_patches, int64_t max_per_side);
// get_flattened_position_ids_interpolate (BagelConfig.interpolate_pos = true; unused by the
// released model): fractional coordinates bucketized into a max_per_side grid, float32 as the
// official torch.arange / torch.bucketize. Not covered by the fixtures.
torch::Tensor flattened_position_ids_interpolate(int64_t h_patches, int64_t w_patches, int64_t max_per_side);
// BagelConfig.interpolate_pos selects one of the two.
torch::Tensor flattened_position_ids(int64_t h_patches, int64_t w_patches, int64_t max_per_side, bool interpolate);

// modeling_utils.get_2d_sincos_pos_embed(embed_dim, grid_size), converted to float32 as
// PositionEmbedding._init_weights does: [G*G, D], row index r*G + c holds
//   [sin(c*w_k), cos(c*w_k), sin(r*w_k), cos(r*w_k)]  (k < D/4 each, w_k = 10000^(-k/(D/4)))
// i.e. the first half of the channels encodes the COLUMN (np.meshgrid(grid_w, grid_h) puts w
// first, despite the "grid_h" comment), the second half the row. Computed in float64 like numpy.
// embed_dim must be a multiple of 4.
torch::Tensor sincos_pos_embed_2d(int64_t embed_dim, int64_t grid_size);

// PositionEmbedding: `pos_embed` [G*G, D], a frozen parameter (requires_grad false) initialised
// with sincos_pos_embed_2d. Inference loads it from ema.safetensors as stored (BF16-rounded,
// |diff| <= ~2e-3 from the float32 table); the trainer drops the stored tables and keeps the
// float32 ones (do not load the key then, or call reset_sincos()).
class PositionEmbeddingImpl : public torch::nn::Module {
 public:
  PositionEmbeddingImpl(int64_t max_num_patch_per_side, int64_t hidden_size);
  void reset_sincos();                                     // pos_embed <- the float32 sin-cos table
  torch::Tensor forward(const torch::Tensor& position_ids);  // pos_embed[position_ids]
  int64_t max_num_patch_per_side, hidden_size;
  torch::Tensor pos_embed;
};
TORCH_MODULE(PositionEmbedding);

// The packed ViT inputs of a list of images (prepare_vit_images): tokens concatenated along the
// token axis, position ids likewise, one seqlen per image.
struct PackedVitImages {
  torch::Tensor tokens;        // [N, 3p^2] float
  torch::Tensor position_ids;  // int64 [N]
  std::vector<int64_t> seqlens;
};
// images: each [3, H, W] with H, W multiples of patch (the ViT ImageTransform guarantees it).
PackedVitImages pack_vit_images(const std::vector<torch::Tensor>& images, int64_t patch, int64_t max_per_side,
                                bool interpolate = false);

// forward_cache_update_vit's embedding step: connector(vit(tokens, ids, seqlens)) + pos_embed(ids)
// -> [N, llm_hidden], the rows that go between <|vision_start|> and <|vision_end|>.
torch::Tensor embed_vit_tokens(nn::SiglipVisionModelImpl& vit, MLPconnectorImpl& connector,
                               PositionEmbeddingImpl& vit_pos_embed, const torch::Tensor& packed_vit_tokens,
                               const torch::Tensor& packed_vit_position_ids, const std::vector<int64_t>& seqlens);

}  // namespace omni::bagel
