// SenseNova-U1 (`neo_chat`) configuration: config.json as the released checkpoints ship it
// (NEOChatConfig with nested llm_config (Qwen3 + rope_theta_hw) and vision_config (NEOVisionConfig)),
// every size read from the file. What this implementation does not run (the Qwen3-MoE A3B
// backbone, U1.5's ConvDecoder pixel head, the AdaLN flow head) is refused with a clear error.
#pragma once
#include <cstdint>
#include <optional>
#include <string>
#include <utility>

namespace omni::sensenova_u1 {

struct LlmConfig {
  int64_t vocab_size = 151936, hidden_size = 4096, intermediate_size = 12288, num_hidden_layers = 42;
  int64_t num_attention_heads = 32, num_key_value_heads = 8, head_dim = 128;
  double rms_norm_eps = 1e-6, rope_theta = 5e6, rope_theta_hw = 1e4;
  bool attention_bias = false;
  bool tie_word_embeddings = false;
  int64_t max_position_embeddings = 32768;  // the sequence an image's tokens must fit in
};

// NEOVisionConfig: the two-conv patch embedder (no transformer layers).
struct VisionConfig {
  int64_t hidden_size = 1024;      // patch_embedding channels
  int64_t llm_hidden_size = 4096;  // dense_embedding channels (= the LLM width)
  int64_t patch_size = 16, num_channels = 3;
  double downsample_ratio = 0.5;  // the 2x2 merge of dense_embedding
  double rope_theta_vision = 1e4;
  int64_t merge() const;  // int(1 / downsample_ratio)
};

// omni's own settings, for models omni trains itself (config.json's optional "omni" object; the
// released checkpoints have none, and the official per-task constants apply):
//   "image_pixels": [min, max]  every image (understanding and edit inputs, training images, the
//                               edit output size) smart-resized into this pixel range instead of
//                               the official 256^2..2048^2 / 512^2..2048^2 / 256^2..512^2;
//   "image_size": [width, height]  the default --mode generate size (official 2048 x 2048);
//   "system_message_for_gen": "..."  the system turn of generate / edit queries and of training's
//                               generation samples (official SYSTEM_MESSAGE_FOR_GEN; "" drops it);
//   "enable_thinking": false    understanding queries end with an empty think block, as Qwen3's
//                               chat template does for enable_thinking=False: the opening the
//                               official training puts before every answer (official chat(): none);
//   "think_before_edit": true   edit queries open a think block the model fills before drawing
//                               (as --think): for a model trained to plan its edits in words.
struct OmniSettings {
  std::optional<std::pair<int64_t, int64_t>> image_pixels;
  std::optional<std::pair<int, int>> image_size;
  std::optional<std::string> system_message_for_gen;
  std::optional<bool> enable_thinking;
  bool think_before_edit = false;
};

struct U1Config {
  LlmConfig llm;
  VisionConfig vision;
  double downsample_ratio = 0.5;  // NEOChatModel.downsample_ratio (token = patch * merge pixels)
  std::string template_name = "neo1_0";
  // Pixel-space flow matching.
  double noise_scale = 1.0;
  std::string noise_scale_mode = "resolution";  // resolution | dynamic | dynamic_sqrt: scale by token count
  double noise_scale_base_image_seq_len = 64, noise_scale_max_value = 8.0;
  bool add_noise_scale_embedding = true;
  double P_mean = 0.0, P_std = 1.0;  // training timestep sampling (logit-normal)
  double t_eps = 0.05;              // training clamp of 1 - t (inference takes its own, default 0.02)
  double timestep_shift = 1.0;      // training shift (inference passes its own)
  OmniSettings omni;
  std::string weights;              // the weights file or shard index

  int64_t patch_size() const { return vision.patch_size; }
  int64_t merge() const;                                             // int(1 / downsample_ratio)
  int64_t token_pixels() const { return patch_size() * merge(); }    // 32: one LLM token per 32x32
  int64_t pixel_patch_dim() const { return 3 * token_pixels() * token_pixels(); }  // fm_head output
  // The official noise_scale for an image of `tokens` generation tokens (python float math):
  // resolution: sqrt(tokens / base) * noise_scale, then min(., noise_scale_max_value).
  double noise_scale_for(int64_t tokens) const;

  // Reads <dir>/config.json and finds the weights (model.safetensors or its index).
  static U1Config from_dir(const std::string& dir);
  static U1Config from_file(const std::string& config_json);  // weights left empty
};

// The width of fm_head.0: hard-coded 4096 in the official NEOChatModel (not the LLM width).
constexpr int64_t kFmHeadWidth = 4096;

}  // namespace omni::sensenova_u1
