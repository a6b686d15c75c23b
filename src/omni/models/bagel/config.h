// A BAGEL / ThinkMorph checkpoint directory as shipped (ByteDance-Seed/BAGEL-7B-MoT,
// ThinkMorph/ThinkMorph-7B): llm_config.json, vit_config.json, ae.safetensors, the weights
// (ema.safetensors for BAGEL, model.safetensors[.index.json] for ThinkMorph), tokenizer.json.
// BAGEL vs ThinkMorph is read from the checkpoint (detect_variant below).
//
// The official loaders (app.py, the notebooks, ThinkMorph's inferencer) hard-code several values
// instead of reading them from a file; they are the defaults here, and an optional
// bagel_config.json (our documented extension; the tiny fixture ships one) overrides them:
//   "bagel_config": latent_patch_size 2, max_latent_size 64, vit_max_num_patch_per_side 70,
//                   connector_act gelu_pytorch_tanh, interpolate_pos false, timestep_shift 1.0
//   "vae_params":   the FLUX AutoEncoderParams (ch 128, ch_mult [1,2,4,4], ...)
//   "vae_transform" / "vit_transform": ImageTransform(1024, 512, 16) / (980, 224, 14)
// Loader rules applied as the official code does: llm qk_norm = true, tie_word_embeddings = false,
// MoT layers; vit rope = false and num_hidden_layers - 1 layers built.
#pragma once
#include <cstdint>
#include <string>

#include "omni/models/bagel/image_transform.h"
#include "omni/nn/flux_vae.h"
#include "omni/nn/qwen2_mot.h"
#include "omni/nn/siglip_navit.h"

namespace omni::bagel {

enum class Variant { Bagel, ThinkMorph };
const char* variant_name(Variant v);

struct BagelConfig {
  std::string dir;
  Variant variant = Variant::Bagel;
  std::string weights_file;  // ema.safetensors / model.safetensors / model.safetensors.index.json

  nn::Qwen2MoTConfig llm;
  nn::SiglipVisionConfig vit;  // layers_built already adjusted
  nn::FluxVaeConfig vae;

  int64_t latent_patch_size = 2;
  int64_t max_latent_size = 64;
  int64_t vit_max_num_patch_per_side = 70;
  std::string connector_act = "gelu_pytorch_tanh";
  bool interpolate_pos = false;
  double timestep_shift = 1.0;  // training only; inference takes its own

  ImageTransformParams vae_transform{1024, 512, 16};
  ImageTransformParams vit_transform{980, 224, 14};

  int64_t latent_channels() const { return vae.z_channels; }
  int64_t latent_downsample() const { return vae.downsample * latent_patch_size; }
  int64_t patch_latent_dim() const { return latent_patch_size * latent_patch_size * vae.z_channels; }
  int64_t hidden_size() const { return llm.llm.hidden_size; }

  // Reads the directory; throws omni::Error naming the missing / malformed file.
  static BagelConfig load(const std::string& dir);
};

// BAGEL's SigLIP layer rules. Inference (app.py, the notebooks): json num_hidden_layers - 1 layers
// are built (the released checkpoint holds 26 of SigLIP-so400m's 27; the fixture 2 of 3).
// Training (train/pretrain_unified_navit.py): json + 1 + vit_select_layer (default -2), the same
// json - 1 for the default.
inline int64_t vit_inference_layers(int64_t json_layers) { return json_layers - 1; }
inline int64_t vit_trainer_layers(int64_t json_layers, int64_t vit_select_layer = -2) {
  return json_layers + 1 + vit_select_layer;
}
// The "vae_params" section of a bagel_config.json-style file (the FLUX defaults where absent).
nn::FluxVaeConfig vae_config_from(const std::string& bagel_config_file);

// What the checkpoint says it is: bagel_config.json "model_type" ("bagel" | "thinkmorph", which
// our exports write) first, then the model card (README.md front matter naming ThinkMorph, as
// ThinkMorph-7B's library_name does); BAGEL otherwise. The weights file name never decides: BAGEL's
// own trainer writes model.safetensors too.
Variant detect_variant(const std::string& dir);

// Whether `dir` looks like a BAGEL-family checkpoint (llm_config.json + vit_config.json +
// ema.safetensors or model.safetensors[.index.json]), and which variant (detect_variant).
bool looks_like_bagel(const std::string& dir, Variant* variant = nullptr);

}  // namespace omni::bagel
