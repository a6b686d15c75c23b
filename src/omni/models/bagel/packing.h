// Conversations -> BAGEL's packed training sequence: the official sequence plan
// (InterleavedBaseIterableDataset._add_text / _add_image) and PackedDataset.pack_sequence +
// to_tensor (use_flex, without the padding sample: a micro-batch's samples are packed exactly).
//
// A conversation becomes items in order: the system prompt (if any) and each text chunk a text
// item ([<|im_start|>] + ids + [<|im_end|>], causal; CE on assistant text: labels ids + <|im_end|>;
// user text may be dropped for CFG), each image one to three image items by its role:
//   "vit"             ViT tokens between <|vision_start|>/<|vision_end|>, full attention, one RoPE id
//   "vae"             clean VAE latents (timestep -inf), full attention, one RoPE id
//   "vae+vit"         clean VAE then ViT (the official edit source)
//   "target"          noisy VAE latents with the MSE loss (attention "noise"; does not advance RoPE)
//   "target+vae+vit"  noisy target, then the same image clean VAE + ViT (an image later content sees)
// Default roles: a user image is "vit" in a conversation without an assistant image
// (understanding) and "vae+vit" otherwise (an edit source); an assistant image is "target" when it
// is the conversation's last element and "target+vae+vit" otherwise. "image_roles" overrides.
#pragma once
#include <torch/torch.h>

#include <optional>
#include <vector>

#include "omni/models/bagel/config.h"
#include "omni/models/bagel/model.h"
#include "omni/models/model.h"

namespace omni::bagel {

struct PackOptions {
  // Official CFG dropout (data config): user text, ViT and clean-VAE inputs.
  double text_cond_dropout_prob = 0, vit_cond_dropout_prob = 0, vae_cond_dropout_prob = 0;
};

struct PackedInputs {
  PackedBatch batch;           // padded_latent left undefined: the caller VAE-encodes padded_images
  torch::Tensor padded_images;  // [N_vae, 3, H_max, W_max], zero-padded (to_tensor)
  int64_t ce_tokens = 0, mse_tokens = 0;
};

// Text ids without markers (the tokenizer's encode).
using Encode = std::function<std::vector<int64_t>(const std::string&)>;

// Packs the conversations one after another (positions restart per sample). Draws (dropout
// uniforms, one N(0,1) raw timestep per target image) come from `gen`; `timesteps` (optional,
// one per target image in order) replaces the timestep draws.
PackedInputs pack_conversations(const std::vector<const models::TrainExample*>& examples, const BagelConfig& cfg,
                                const BagelTokenIds& ids, const Encode& encode, const PackOptions& opts,
                                at::Generator* gen, const std::vector<double>* timesteps = nullptr);

// The sequence length, CE and MSE token counts of one conversation without dropout (the plan).
models::TrainPlan plan_conversation(const models::TrainExample& ex, const BagelConfig& cfg, const Encode& encode);

}  // namespace omni::bagel
