// The SenseNova-U1 module tree (official neo_unify/modeling_neo_chat.py: NEOChatModel), mirroring
// model.safetensors: language_model.* (decoder.h), vision_model.embeddings.{patch,dense}_embedding,
// fm_modules.{vision_model_mot_gen.embeddings.*, timestep_embedder.mlp.{0,2},
// noise_scale_embedder.mlp.{0,2}, fm_head.{0,2}}.
//
// No ViT and no VAE: images enter through a two-conv patch embedder (NEOVisionEmbeddings) and are
// generated in pixel space, one LLM token per 32x32 pixels (patch 16, 2x2 merge), by flow
// matching with x-prediction: fm_head maps a generation token's final hidden state to its clean
// 32x32x3 patch.
#pragma once
#include <torch/torch.h>

#include <memory>
#include <utility>
#include <vector>

#include "omni/models/sensenova_u1/config.h"
#include "omni/models/sensenova_u1/decoder.h"
#include "omni/nn/timestep_embedder.h"

namespace omni::sensenova_u1 {

// (rows, cols) of one image's 16-px patch grid (the official grid_hw row).
using GridHW = std::pair<int64_t, int64_t>;

// NEOVisionEmbeddings: Conv2d(3 -> E, k = s = patch) on each patch, exact GELU, a 2-D RoPE on the
// E features (first half rotated by the patch column, second half by the row, interleaved pairs,
// rope_theta_vision, computed in float32), then Conv2d(E -> C, k = s = merge) over the patch grid:
// tokens in row-major order of the merged grid. The convolutions run as the equivalent matmuls.
class NeoVisionEmbeddingsImpl : public torch::nn::Module {
 public:
  explicit NeoVisionEmbeddingsImpl(const VisionConfig& c);
  // pixel_values [N, 3 * p * p] (rows (c, py, px), images one after another), grids per image
  // -> [sum of (h / merge) * (w / merge), C].
  torch::Tensor forward(const torch::Tensor& pixel_values, const std::vector<GridHW>& grids);
  torch::nn::Conv2d patch_embedding{nullptr}, dense_embedding{nullptr};
  VisionConfig cfg;
};
TORCH_MODULE(NeoVisionEmbeddings);

class NeoVisionModelImpl : public torch::nn::Module {
 public:
  explicit NeoVisionModelImpl(const VisionConfig& c);
  torch::Tensor forward(const torch::Tensor& pixel_values, const std::vector<GridHW>& grids) {
    return embeddings->forward(pixel_values, grids);
  }
  NeoVisionEmbeddings embeddings{nullptr};
};
TORCH_MODULE(NeoVisionModel);

class FmModulesImpl : public torch::nn::Module {
 public:
  explicit FmModulesImpl(const U1Config& c);
  NeoVisionModel vision_model_mot_gen{nullptr};
  nn::TimestepEmbedder timestep_embedder{nullptr}, noise_scale_embedder{nullptr};  // the latter optional
  torch::nn::Sequential fm_head{nullptr};  // Linear(C, 4096), GELU, Linear(4096, 3 * 32 * 32)
};
TORCH_MODULE(FmModules);

// Image <-> token layouts of the official patchify / unpatchify (images [B, 3, H, W]):
//   channel-first [B, (H/p)(W/p), 3 p p] rows (c, py, px): what the patch embedders read;
//   channel-last  [B, (H/p)(W/p), p p 3] rows (py, px, c): the fm_head / velocity layout.
torch::Tensor patchify(const torch::Tensor& images, int64_t p, bool channel_first);
torch::Tensor unpatchify(const torch::Tensor& tokens, int64_t p, int64_t height, int64_t width);

// One sequence's cache and its running t index (the official current_index: the t of the last
// token in the cache).
struct U1Context {
  nn::KVCache kv;
  int64_t t = -1;
};

class NeoChatImpl : public torch::nn::Module {
 public:
  explicit NeoChatImpl(const U1Config& c);
  // The model from `c.weights` (strict 1:1 names), in `dtype` on `device`, in eval mode.
  static std::shared_ptr<NeoChatImpl> load(const U1Config& c, torch::Device device = torch::kCPU,
                                           torch::ScalarType dtype = torch::kFloat32);
  torch::Device device() const;
  torch::ScalarType dtype() const;
  U1Context make_context() const { return {language_model->model->make_cache(), -1}; }

  // Understanding embedder (vision_model) of patch rows [N, 3 p p] -> [tokens, C].
  torch::Tensor vision_embeds(const torch::Tensor& pixel_values, const std::vector<GridHW>& grids);
  // Token embeddings of ids [T] with the rows where ids == context_id replaced, in order, by
  // image_embeds [n, C] (n must equal their count).
  torch::Tensor embed_prefix(const torch::Tensor& ids, const torch::Tensor& image_embeds, int64_t context_id);

  // Understanding rows x [T, C] at indexes [3, T] appended to ctx with `mask` (dense [T, len + T],
  // a packed layout, or none) -> final-normed hidden [T, C]; ctx.t becomes max(indexes[0]).
  torch::Tensor append(U1Context& ctx, const torch::Tensor& x, const torch::Tensor& indexes,
                       const nn::AttentionMask& mask);
  // A prefix into an empty context with the official prefill mask (create_block_causal_mask:
  // causal, plus full attention among rows of equal t, i.e. within one image).
  torch::Tensor prefill(U1Context& ctx, const torch::Tensor& x, const torch::Tensor& indexes);
  // One text token at t = ctx.t + 1, h = w = 0, seeing the whole cache -> float32 logits [V].
  torch::Tensor decode_step(U1Context& ctx, int64_t token);
  // Ids appended causally after the cache (t = ctx.t + 1, ...): _append_text_tokens_to_cache.
  torch::Tensor append_text(U1Context& ctx, const std::vector<int64_t>& ids);
  torch::Tensor logits(const torch::Tensor& hidden) { return language_model->logits(hidden); }

  // ---- flow matching ---------------------------------------------------------------------------
  // Inputs of the generation tokens for image [B, 3, H, W] at time t: vision_model_mot_gen of its
  // 16-px patches + (timestep_embedder(t) + noise_scale_embedder(noise_ratio)) -> [B * T, C].
  // `parts` (optional) receives the three terms (patch embeds, t row, noise-scale row).
  torch::Tensor gen_inputs(const torch::Tensor& image, const torch::Tensor& t, double noise_ratio,
                           std::vector<torch::Tensor>* parts = nullptr);
  // x-prediction of a flow step: the generation rows `x` [T, C] at `indexes` attend to ctx's cache
  // and themselves (no mask, the cache unchanged) through the _mot_gen weights, then
  // fm_head(norm_mot_gen(h)) -> [T, 3 * 32 * 32] (channel-last patches).
  torch::Tensor predict_x(U1Context& ctx, const torch::Tensor& x, const torch::Tensor& indexes);
  // (h, w) grid indexes [3, T] of a generation image: t fixed, h/w = row/col in the token grid.
  torch::Tensor image_indexes(int64_t token_h, int64_t token_w, int64_t t) const;

  U1Config cfg;
  Qwen3MoTForCausalLM language_model{nullptr};
  NeoVisionModel vision_model{nullptr};
  FmModules fm_modules{nullptr};
};
TORCH_MODULE(NeoChat);

// The official create_block_causal_mask(t) [T, T] additive (0 / -inf): j <= i or t_j == t_i.
torch::Tensor block_causal_mask(const torch::Tensor& t);

}  // namespace omni::sensenova_u1
