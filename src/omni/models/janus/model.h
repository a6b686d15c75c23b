// Janus / Janus-Pro (deepseek-ai/Janus, janus/models/modeling_vlm.py MultiModalityCausalLM) in
// libtorch. The module tree mirrors the official state_dict 1:1:
//   language_model.{model.*, lm_head}         LlamaForCausalLM
//   vision_model.vision_tower.*               SigLIP ViT (attn_pool.* is in checkpoints but unused:
//                                             loaded-and-ignored, as ignore_head=True never runs it)
//   aligner.layers.*                          MlpProjector (understanding: vision -> LM)
//   gen_vision_model.*                        VQ-16 tokenizer (incl. quantize.codebook_used buffer)
//   gen_aligner.layers.*                      MlpProjector (generation: gen_embed -> LM)
//   gen_head.{output_mlp_projector, vision_head}
//   gen_embed                                 Embedding(image_token_size, n_embed)
//
// Entry points for a CLI:
//   auto m = JanusModel::load(dir);                          // config.json + weights
//   understanding:  m->prepare_inputs_embeds(ids, pixels, seq_mask, emb_mask) -> m->understand(...)
//   text-to-image:  m->generate_image_tokens(prompt_ids, pad_id, opts) -> m->decode_image_tokens(...)
//                   -> JanusModel::to_uint8_images(...)
// No method enters inference mode itself: callers do (the family's entry points in family.cpp),
// so the same forward runs under autograd for training.
#pragma once
#include <torch/torch.h>

#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "omni/io/checkpoint_torch.h"
#include "omni/io/trace_torch.h"
#include "omni/models/janus/config.h"
#include "omni/nn/llama.h"
#include "omni/nn/vit.h"
#include "omni/nn/vq.h"

namespace omni::models::janus {

// ---- module tree -----------------------------------------------------------------------------
class CLIPVisionTowerImpl : public torch::nn::Module {
 public:
  explicit CLIPVisionTowerImpl(const VisionConfig& c);
  torch::Tensor forward(const torch::Tensor& pixels);  // [B,3,H,W] -> [B, N, width]
  VisionConfig cfg;
  nn::VisionTransformer vision_tower{nullptr};
};
TORCH_MODULE(CLIPVisionTower);

class VisionHeadImpl : public torch::nn::Module {
 public:
  explicit VisionHeadImpl(const GenHeadConfig& c);
  torch::Tensor forward(const torch::Tensor& x);  // Linear -> GELU(erf) -> Linear
  torch::nn::Linear output_mlp_projector{nullptr}, vision_head{nullptr};
};
TORCH_MODULE(VisionHead);

class MultiModalityCausalLMImpl : public torch::nn::Module {
 public:
  explicit MultiModalityCausalLMImpl(const JanusConfig& c);
  CLIPVisionTower vision_model{nullptr};
  nn::MlpProjector aligner{nullptr};
  nn::VQModel gen_vision_model{nullptr};
  nn::MlpProjector gen_aligner{nullptr};
  VisionHead gen_head{nullptr};
  torch::nn::Embedding gen_embed{nullptr};
  nn::LlamaForCausalLM language_model{nullptr};
};
TORCH_MODULE(MultiModalityCausalLM);

// ---- options and results ---------------------------------------------------------------------
struct TextGenOptions {
  int max_new_tokens = 512;
  std::vector<int64_t> eos_token_ids;  // stop after generating one of these (it is returned)
  // generate::sample_next (HF generate(do_sample=True) rules); temperature <= 0 is greedy.
  double temperature = 0.0;
  int64_t top_k = 50;  // HF GenerationConfig default; 0 disables
  double top_p = 1.0;
  at::Generator* generator = nullptr;  // every draw comes from it (required when sampling)
  bool keep_step_logits = false;  // fill TextGenResult::step_logits
  // Called with each new token (host value) as soon as it is known; return false to stop.
  std::function<bool(int64_t token)> on_token;
};

struct TextGenResult {
  std::vector<int64_t> tokens;  // generated ids (incl. the EOS that stopped it)
  torch::Tensor logits_last;    // [V] float32 logits of the last step
  torch::Tensor step_logits;    // [steps, V] raw logits of every step (keep_step_logits)
  std::string stop_reason;      // "eos", "max_new_tokens", "callback"
  int64_t prompt_tokens = 0;
  double prefill_seconds = 0, decode_seconds = 0;
};

struct ImageGenOptions {
  int64_t parallel_size = 16;  // P images (generation_inference.py default; the demos use 5)
  double cfg_weight = 5.0;
  double temperature = 1.0;    // <= 0: argmax instead of sampling (the official code divides by 0)
  int64_t image_size = 384;    // tokens = (image_size / VQ downsample factor)^2
  at::Generator* generator = nullptr;  // every draw comes from it (required when sampling)
  bool progress = true;          // Progress bar over image tokens (stderr)
  // Teacher forcing (tests): feed these tokens [P, N] instead of sampling.
  torch::Tensor forced_tokens;
  // Observer per step i: raw gen_head logits [2P, V] (rows cond, uncond interleaved) and the
  // guided logits [P, V] before temperature.
  std::function<void(int64_t step, const torch::Tensor& raw, const torch::Tensor& guided)> on_step;
};

struct ImageGenResult {
  torch::Tensor tokens;            // int32 [P, N]
  torch::Tensor cfg_input_tokens;  // int32 [2P, L] (even rows cond, odd rows uncond)
  int64_t grid = 0;                // h = w = image_size / downsample factor
  double seconds = 0;
};

struct LossResult {
  torch::Tensor loss;      // scalar: mean CE over the targets
  torch::Tensor token_ce;  // [n_targets] per-target CE, in sequence order
  torch::Tensor logits;    // the logits the loss was computed from
};

// ---- the model -------------------------------------------------------------------------------
class JanusModel {
 public:
  struct LoadOptions {
    torch::Device device = torch::kCPU;
    torch::ScalarType dtype = torch::kFloat32;
  };
  // <dir>/config.json plus the weights Checkpoint::open(dir) finds (safetensors or .bin).
  static std::unique_ptr<JanusModel> load(const std::string& dir, const LoadOptions& opts);
  static std::unique_ptr<JanusModel> load(const std::string& dir) { return load(dir, LoadOptions{}); }
  // The weights a checkpoint folder holds (what load reads and an export rewrites).
  static io::Checkpoint weights_checkpoint(const std::string& dir);

  explicit JanusModel(const JanusConfig& cfg);  // uninitialised weights
  // Strict 1:1 load (prefix ""): vision_model.vision_tower.attn_pool.* and SigLIP blocks beyond
  // select_layer are ignored on purpose; anything else missing/unexpected/mis-shaped throws.
  void load_weights(const io::Checkpoint& ckpt);
  void to(torch::Device device, torch::ScalarType dtype);

  const JanusConfig& config() const { return cfg_; }
  MultiModalityCausalLM& net() { return net_; }
  torch::Device device() const;
  torch::ScalarType dtype() const;
  int64_t image_tokens_per_image() const { return cfg_.vision.vit.num_patches(); }
  // Optional recorder of named intermediates (vision_features, aligned_image_embeds,
  // inputs_embeds, prefill_logits, generated_tokens, decoded ...); not owned, may be null.
  void set_trace(io::Trace* trace) { trace_ = trace; }

  // -- understanding --
  torch::Tensor vision_features(const torch::Tensor& pixels);  // [B,3,H,W] -> [B, N, width]
  torch::Tensor align(const torch::Tensor& features);          // -> [B, N, D]
  // input_ids int [B, T], pixel_values [B, n, 3, H, W], images_seq_mask bool [B, T],
  // images_emb_mask bool [B, n, N] -> [B, T, D].
  torch::Tensor prepare_inputs_embeds(const torch::Tensor& input_ids, const torch::Tensor& pixel_values,
                                      const torch::Tensor& images_seq_mask, const torch::Tensor& images_emb_mask);
  // Logits of the LM for full embeddings (no cache): [B, T, V].
  torch::Tensor lm_logits(const torch::Tensor& inputs_embeds, const torch::Tensor& attention_mask = {});
  // Prefill + decode with a preallocated KV cache; batch 1. attention_mask: undefined or [1, T].
  TextGenResult understand(const torch::Tensor& inputs_embeds, const TextGenOptions& opts,
                           const torch::Tensor& attention_mask = {});

  // -- text-to-image --
  // The CFG rows of generation_inference.py: 2P int32 rows; odd rows get pad_id at 1..L-2.
  static torch::Tensor cfg_rows(const std::vector<int64_t>& prompt_ids, int64_t pad_id, int64_t parallel_size);
  ImageGenResult generate_image_tokens(const std::vector<int64_t>& prompt_ids, int64_t pad_id,
                                       const ImageGenOptions& opts);
  // gen_aligner(gen_embed(ids)).
  torch::Tensor gen_image_embeds(const torch::Tensor& ids);
  // tokens [P, h*w] -> decoded images [P, 3, H, W] (decode_code with shape [P, C, h, w]).
  torch::Tensor decode_image_tokens(const torch::Tensor& tokens, int64_t grid);
  // The official post-processing: clip((x + 1) / 2 * 255, 0, 255), truncated to uint8, NHWC.
  static torch::Tensor to_uint8_images(const torch::Tensor& decoded);

  // -- VQ --
  nn::VQModelImpl::Encoded vq_encode(const torch::Tensor& pixels);
  torch::Tensor decode_code(const torch::Tensor& codes, const std::vector<int64_t>& shape);

  // -- training losses (forward only here; run with grad enabled to train) --
  // Shift-by-one mean CE over labels != -100 (transformers ForCausalLMLoss).
  LossResult text_loss(const torch::Tensor& inputs_embeds, const torch::Tensor& labels,
                       const torch::Tensor& attention_mask = {});
  // e = cat(embed_tokens(prompt_ids [B, L]), gen_image_embeds(codes [B, N])); h = LM(e);
  // logits = gen_head(h[:, L-1 : L-1+N]) predicting codes; mean CE.
  LossResult image_gen_loss(const torch::Tensor& prompt_ids, const torch::Tensor& image_codes);

 private:
  void trace(const std::string& name, const torch::Tensor& t) {
    if (trace_ && trace_->enabled()) trace_->record(name, t);
  }
  JanusConfig cfg_;
  MultiModalityCausalLM net_{nullptr};
  io::Trace* trace_ = nullptr;
};

}  // namespace omni::models::janus
