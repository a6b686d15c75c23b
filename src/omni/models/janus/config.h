// Janus / Janus-Pro config.json (model_type "multi_modality"), parsed with every default of the
// official code applied explicitly:
//   language_config   -> transformers LlamaConfig (see nn::LlamaConfig::from_hf)
//   vision_config     -> CLIPVisionTower(**params): model_name picks a row of
//                        siglip_vit.SigLIP_MODEL_CONFIG; explicit size keys under params
//                        (width, layers, heads, mlp_ratio, patch_size, global_pool) override it
//                        (the official code ignores them; the tiny test fixture relies on them)
//   aligner_config / gen_aligner_config -> MlpProjector(params)
//   gen_vision_config -> VQ_models[cls]() (VQ-16); params ch, ch_mult, z_channels,
//                        codebook_size, codebook_embed_dim override; params image_token_size and
//                        n_embed size gen_embed
//   gen_head_config   -> vision_head(params)
#pragma once
#include <array>
#include <optional>
#include <string>
#include <vector>

#include "omni/io/hf_config.h"
#include "omni/nn/llama.h"
#include "omni/nn/vit.h"
#include "omni/nn/vq.h"

namespace omni::models::janus {

struct VisionConfig {
  std::string model_name;  // e.g. siglip_large_patch16_384
  int64_t image_size = 336;   // CLIPVisionTower default
  int64_t select_layer = -2;  // CLIPVisionTower default; Janus configs set -1 (all layers)
  std::string global_pool = "map";
  int64_t table_layers = 0;   // layers of the named model before select_layer
  double mlp_ratio = 4.0;
  std::optional<std::array<double, 3>> pixel_mean, pixel_std;  // CLIPVisionTower image_norm
  nn::ViTConfig vit;          // what is built
};

struct ProjectorConfig {
  std::string type = "mlp_gelu";
  int64_t input_dim = 0, n_embed = 0, depth = 1;
};

struct GenVisionConfig {
  std::string cls;  // "VQ-16"
  nn::VQConfig vq;
  int64_t image_token_size = 16384;  // gen_embed rows
  int64_t n_embed = 8;               // gen_embed width
};

struct GenHeadConfig {
  int64_t n_embed = 0, image_token_embed = 0, image_token_size = 0;
};

struct JanusConfig {
  std::string source;
  nn::LlamaConfig language;
  VisionConfig vision;
  ProjectorConfig aligner, gen_aligner;
  GenVisionConfig gen_vision;
  GenHeadConfig gen_head;

  static JanusConfig from_hf(const io::HfConfig& cfg);
  static JanusConfig from_file(const std::string& config_json);
};

// The official SigLIP table row (throws omni::Error listing the known names).
struct SiglipTableRow {
  int64_t image_size, patch_size, width, layers, heads;
  double mlp_ratio;
  const char* global_pool;
};
const SiglipTableRow* find_siglip_row(const std::string& model_name);

}  // namespace omni::models::janus
