// BAGEL's InterleaveInferencer (ByteDance-Seed/Bagel inferencer.py) for one sequence: three
// KV contexts (gen, cfg_text, cfg_img), text / image context updates, greedy or sampled text
// generation, and the rectified-flow Euler loop with the official CFG + renorm rules
// (Bagel.generate_image / _forward_flow).
#pragma once
#include <torch/torch.h>

#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "omni/generate/flow.h"
#include "omni/generate/sampler.h"
#include "omni/io/image.h"
#include "omni/models/bagel/model.h"
#include "omni/nn/flux_vae.h"
#include "omni/text/tokenizer.h"

namespace omni::bagel {

// The official think-mode system prompts (inferencer.py), exact strings.
extern const char* const kVlmThinkSystemPrompt;
extern const char* const kGenThinkSystemPrompt;

struct FlowOptions {
  int num_timesteps = 50;  // T: T-1 model evaluations
  double timestep_shift = 3.0;
  double cfg_text_scale = 4.0;
  double cfg_img_scale = 1.5;
  std::pair<double, double> cfg_interval{0.4, 1.0};
  std::string cfg_renorm_type = "global";  // global | channel | text_channel
  double cfg_renorm_min = 0.0;
  void validate() const;  // throws omni::Error naming the flag
};

using generate::flow_timesteps;

// The three contexts of one generation.
struct FlowContexts {
  const nn::KVContext* gen = nullptr;
  const nn::KVContext* cfg_text = nullptr;
  const nn::KVContext* cfg_img = nullptr;
};

// One guided velocity evaluation (_forward_flow) and what it was made of.
struct GuidedVelocity {
  torch::Tensor v;                     // after CFG + renorm [N, D]
  torch::Tensor v_cond, v_text, v_img;  // branch outputs (undefined where a branch did not run)
  double text_scale = 1, img_scale = 1;  // after cfg_interval gating
};

class BagelInferencer;

// ThinkMorph's interleave_inference loop (think=True, understanding_output=False) after the inputs:
// up to max_rounds times, generate a text round and add it to `gen`; if the text contains
// "<image_start>", draw an image (from `gen` and the caller's frozen CFG contexts), then add it
// back to `gen` as a clean VAE block + a ViT block (after the VAE resize rule); otherwise stop.
// Returns the text rounds in order. gen_text / draw are the caller's (streaming, tracing).
struct InterleavedSteps {
  std::function<std::string(const nn::KVContext& gen)> gen_text;
  std::function<io::Image(const nn::KVContext& gen, int round)> draw;
};
// The VAE posterior of each fed-back image is drawn from `rng`.
std::vector<std::string> interleaved_reasoning(BagelInferencer& inf, nn::KVContext& gen, int max_rounds,
                                               const InterleavedSteps& steps, at::Generator& rng);

class BagelInferencer {
 public:
  BagelInferencer(std::shared_ptr<BagelImpl> model, std::shared_ptr<nn::FluxAutoEncoderImpl> vae,
                  text::Tokenizer tokenizer);
  // Loads the checkpoint directory (weights, ae.safetensors, tokenizer.json). The MoT model,
  // ViT and connectors run in `dtype` on `device`; the VAE stays float32 on `device`.
  static BagelInferencer load(const std::string& dir, torch::Device device = torch::kCPU,
                              torch::ScalarType dtype = torch::kFloat32);
  // The marker ids the model needs, looked up by string in the tokenizer.
  static BagelTokenIds token_ids(const text::Tokenizer& tok);

  BagelImpl& model() { return *model_; }
  torch::Device device() const { return model_->device(); }
  torch::ScalarType dtype() const { return model_->dtype(); }
  nn::FluxAutoEncoderImpl& vae() { return *vae_; }
  const text::Tokenizer& tokenizer() const { return tok_; }
  const BagelConfig& config() const { return model_->cfg; }
  nn::KVContext new_context() const { return model_->make_context(); }

  // [<|im_start|>] + encode(text) + [<|im_end|>]
  std::vector<int64_t> text_ids(const std::string& text) const;
  // Appends a text block; returns its final hidden rows [L, C] (the last one predicts the next token).
  torch::Tensor update_context_text(nn::KVContext& ctx, const std::string& text);
  // float32 logits of hidden rows.
  torch::Tensor logits(const torch::Tensor& hidden) { return model_->logits(hidden).to(torch::kFloat32); }
  // The VAE resize rule every input image gets first (interleave_inference).
  io::Image vae_resize(const io::Image& img) const;
  // update_context_image on an image already through vae_resize: a clean VAE block (posterior
  // sampled with `vae_eps`, or drawn from `gen` when undefined) and/or a ViT block.
  // Optional outs: the VAE input / encoded latent and the packed ViT patches.
  struct ImageBlocks {
    torch::Tensor vae_input, vae_latent, vit_tokens;
  };
  ImageBlocks update_context_image(nn::KVContext& ctx, const io::Image& resized, bool vae, bool vit,
                                   const torch::Tensor& vae_eps = {}, at::Generator* gen = nullptr);

  // gen_text on a copy of ctx: start token at ctx.rope, then one token at a time until
  // <|im_end|> (not returned) or `max_length` steps (the start token counts: max_length - 1 new
  // tokens at most). The official sampler: greedy, or softmax(logits / temperature) + multinomial
  // drawn from `gen` (generate::SamplerOptions with temperature only).
  // on_token(id) is called for each new token; returning false stops.
  struct TextResult {
    std::vector<int64_t> tokens;  // without the start token
    torch::Tensor first_logits;   // logits of the start-token step [V]
    std::string stop_reason;      // "eos" | "max_length" | "callback"
  };
  TextResult gen_text(const nn::KVContext& ctx, int max_length, const generate::SamplerOptions& sampler = {},
                      at::Generator* gen = nullptr, const std::function<bool(int64_t)>& on_token = {});
  // The decoded string as the official gen_text returns it (text between the markers).
  std::string decode_text(const std::vector<int64_t>& tokens) const;

  // One _forward_flow evaluation at time t (gating by cfg_interval on t, as generate_image).
  GuidedVelocity guided_velocity(const FlowContexts& ctxs, const torch::Tensor& x_t, float t,
                                 const torch::Tensor& latent_position_ids, const FlowOptions& o);
  // generate_image for an H x W image: from init_noise [h*w, D] (drawn from `gen` when undefined)
  // to the final float32 latent tokens. on_step(i, t, x_t, gv) is called for every step.
  torch::Tensor gen_image_latents(int height, int width, const FlowContexts& ctxs, const FlowOptions& o,
                                  torch::Tensor init_noise = {},
                                  const std::function<void(int, float, const torch::Tensor&, const GuidedVelocity&)>&
                                      on_step = {},
                                  bool show_progress = false, at::Generator* gen = nullptr);
  // decode_image: latent tokens -> VAE decode [1, 3, H, W] (float, before the uint8 mapping).
  torch::Tensor decode_latents(const torch::Tensor& tokens, int height, int width);
  // ((x * 0.5 + 0.5).clamp(0, 1) * 255).to(uint8) of [1, 3, H, W] -> RGB image.
  static io::Image to_image(const torch::Tensor& decoded);

 private:
  std::shared_ptr<BagelImpl> model_;
  std::shared_ptr<nn::FluxAutoEncoderImpl> vae_;
  text::Tokenizer tok_;
};

}  // namespace omni::bagel
