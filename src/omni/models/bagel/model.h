// The BAGEL module tree (ByteDance-Seed/Bagel modeling/bagel/bagel.py: Bagel), mirroring
// ema.safetensors: language_model.*, vit_model.*, connector.*, vit_pos_embed.pos_embed,
// time_embedder.mlp.{0,2}, vae2llm, llm2vae, latent_pos_embed.pos_embed. The FLUX VAE
// (ae.safetensors) is a separate module (nn::FluxAutoEncoder), as in the official code.
//
// The block builders reproduce the official prepare_* + forward_cache_update_* pairs for one
// sequence (the inferencer's batch of 1): each block is [<|vision_start|>, tokens..., <|vision_end|>]
// for images (all at one RoPE position) or [<|im_start|>, text..., <|im_end|>] for text.
#pragma once
#include <torch/torch.h>

#include <memory>
#include <string>
#include <vector>

#include "omni/models/bagel/config.h"
#include "omni/models/bagel/vit_blocks.h"
#include "omni/nn/qwen2_mot.h"
#include "omni/nn/timestep_embedder.h"

namespace omni::bagel {

// time_embedder: the shared DiT timestep embedder (nn/timestep_embedder.h).
using nn::TimestepEmbedder;

// The official latent patchify: latent [C, h*p, w*p] -> [h*w, p*p*C] ((row, col) of the patch grid
// row-major, each token ordered (row-in-patch, col-in-patch, channel)); and its inverse.
torch::Tensor patchify_latent(const torch::Tensor& latent, int64_t p);
torch::Tensor unpatchify_latent(const torch::Tensor& tokens, int64_t h, int64_t w, int64_t p, int64_t channels);

// One packed training batch, as the official PackedDataset / SimpleCustomBatch.to_dict gives it
// (batch of one rank). Index tensors are int64 sequence positions.
struct PackedBatch {
  int64_t sequence_length = 0;
  std::vector<int64_t> sample_lens;      // may end with the flex padding sample (beyond sequence_length)
  std::vector<int64_t> split_lens;       // per split, in order over all samples
  std::vector<std::string> attn_modes;   // "causal" | "full" | "noise" per split
  torch::Tensor packed_text_ids, packed_text_indexes, packed_position_ids;
  torch::Tensor packed_vit_tokens, packed_vit_position_ids, packed_vit_token_indexes;
  std::vector<int64_t> vit_token_seqlens;
  torch::Tensor padded_latent;  // VAE latents of the padded images [B, z, H/8, W/8] (encoded under no-grad)
  std::vector<std::pair<int64_t, int64_t>> patchified_vae_latent_shapes;  // (h, w) token grid per image
  torch::Tensor packed_latent_position_ids, packed_vae_token_indexes;
  torch::Tensor packed_timesteps;  // raw per VAE token: N(0,1) draws for loss images, -inf for clean ones
  torch::Tensor mse_loss_indexes, ce_loss_indexes, packed_label_ids;
};

// The official dense attention rules (data_utils.prepare_attention_mask_per_sample; the training
// forward uses nn::packed_attention instead, this is its reference in the tests) for the
// samples inside sequence_length, block-diagonal over samples: additive float mask [T, T]
// (0 = attend, -inf = masked). Query q sees key k of its sample iff k <= q, or both lie in the
// same full/noise split; nobody outside a noise split sees into it.
torch::Tensor packed_attention_mask(const PackedBatch& b);

struct TrainOutputs {
  torch::Tensor ce;   // per CE token (reduction none) [N_ce]
  torch::Tensor mse;  // per element [N_mse, patch_latent_dim]
};

struct BagelTokenIds {
  int64_t bos = -1, eos = -1, start_of_image = -1, end_of_image = -1;  // <|im_start|> ...
};

class BagelImpl : public torch::nn::Module {
 public:
  explicit BagelImpl(const BagelConfig& c);
  // Loads the weights file into this tree (strict), built in `dtype` and moved to `device`, and
  // returns it ready for inference. `ids` are the tokenizer's marker ids.
  static std::shared_ptr<BagelImpl> load(const BagelConfig& c, const BagelTokenIds& ids = {},
                                         torch::Device device = torch::kCPU,
                                         torch::ScalarType dtype = torch::kFloat32);
  torch::Device device() const;
  torch::ScalarType dtype() const;

  // ---- blocks (each appends to / reads ctx; mode und = everything through the und expert) ----
  // Text block: ids with their markers, causal, und. Returns the final hidden [L, C].
  torch::Tensor add_text_block(nn::KVContext& ctx, const std::vector<int64_t>& ids_with_markers);
  // ViT block of one image [3, H, W] (the ViT transform's output). und, full attention.
  // vit_tokens (optional out): the packed patches [N, 3p^2].
  torch::Tensor add_vit_block(nn::KVContext& ctx, const torch::Tensor& image, torch::Tensor* vit_tokens = nullptr);
  // Clean VAE block (t = 0) from an encoded latent [z, H/8, W/8] (already scaled and shifted).
  // gen mode, full attention.
  torch::Tensor add_vae_block(nn::KVContext& ctx, const torch::Tensor& latent);
  // The embedded latent rows vae2llm(x) + time_embedder(t) + latent_pos_embed(ids) [N, C].
  torch::Tensor embed_latents(const torch::Tensor& x, double t, const torch::Tensor& latent_position_ids);
  // Latent-grid position ids of an h x w token grid (row * max_latent_size + col).
  torch::Tensor latent_position_ids(int64_t h, int64_t w) const;
  // One flow evaluation: the query block [start, latents x_t (embedded), end] placed at ctx.rope
  // against ctx (no cache write), gen mode, full attention -> llm2vae velocity of the latent
  // rows [N, patch_latent_dim]. `query` holds the embedded block rows (see flow_query).
  torch::Tensor flow_velocity(const nn::KVContext& ctx, const torch::Tensor& query);
  // Embedded query block rows for latents x_t [N, D] at time t: [N + 2, C].
  torch::Tensor flow_query(const torch::Tensor& x_t, double t, const torch::Tensor& latent_position_ids);
  torch::Tensor logits(const torch::Tensor& hidden) { return language_model->logits(hidden); }
  // One text decode step: `token` at RoPE `position`, appended to ctx (causal, und) -> float32
  // logits [V].
  torch::Tensor text_step_logits(nn::KVContext& ctx, int64_t token, int64_t position);
  // Bagel.forward in training mode (autograd on): the packed sequence through ViT, latents
  // noised with `noise` (drawn from `gen` when undefined) at sigmoid(raw t) shifted by
  // cfg.timestep_shift, the MoT decoder with the packed mask, CE on ce_loss_indexes and the
  // flow-matching squared error (noise - clean) on mse_loss_indexes.
  // `noise` undefined: drawn from `gen` (required then).
  TrainOutputs forward_train(const PackedBatch& b, const torch::Tensor& noise = {}, at::Generator* gen = nullptr);
  // The trainer's view of the weights: the sin-cos tables recomputed in float32 (the trainer
  // drops the stored BF16 ones) and frozen.
  void use_training_position_tables();
  nn::KVContext make_context() const { return language_model->model->make_context(); }

  BagelConfig cfg;
  BagelTokenIds ids;  // the tokenizer's marker ids (given to load)
  nn::MoTForCausalLM language_model{nullptr};
  nn::SiglipVisionModel vit_model{nullptr};
  MLPconnector connector{nullptr};
  PositionEmbedding vit_pos_embed{nullptr};
  TimestepEmbedder time_embedder{nullptr};
  torch::nn::Linear vae2llm{nullptr}, llm2vae{nullptr};
  PositionEmbedding latent_pos_embed{nullptr};

 private:
  torch::Tensor ids_tensor(const std::vector<int64_t>& v) const;  // int64 on the model's device
  torch::TensorOptions long_options() const;
  torch::Tensor marker_rows(int64_t n_inner, const torch::Tensor& inner);  // [start; inner; end]
};
TORCH_MODULE(Bagel);

}  // namespace omni::bagel
