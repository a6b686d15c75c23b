#include "omni/models/bagel/inferencer.h"

#include <cstring>
#include <filesystem>

#include "omni/core/error.h"
#include "omni/core/log.h"
#include "omni/generate/cfg.h"
#include "omni/generate/context_window.h"
#include "omni/models/bagel/image_transform.h"

namespace fs = std::filesystem;

namespace omni::bagel {

const char* const kVlmThinkSystemPrompt =
    "You should first think about the reasoning process in the mind and then provide the user with the answer. \n"
    "The reasoning process is enclosed within <think> </think> tags, i.e. <think> reasoning process here </think> "
    "answer here";
const char* const kGenThinkSystemPrompt =
    "You should first think about the planning process in the mind and then generate the image. \n"
    "The planning process is enclosed within <think> </think> tags, i.e. <think> planning process here </think> "
    "image here";

void FlowOptions::validate() const {
  check(num_timesteps >= 2, "--steps", "must be at least 2 (num_timesteps: steps - 1 model evaluations)");
  check(timestep_shift > 0, "--timestep_shift", "must be positive");
  check(cfg_interval.first <= cfg_interval.second, "--cfg_interval", "expects A,B with A <= B");
  check(cfg_renorm_type == "global" || cfg_renorm_type == "channel" || cfg_renorm_type == "text_channel",
        "--cfg_renorm_type", "expects global, channel or text_channel (got \"" + cfg_renorm_type + "\")");
}

BagelInferencer::BagelInferencer(std::shared_ptr<BagelImpl> model, std::shared_ptr<nn::FluxAutoEncoderImpl> vae,
                                 text::Tokenizer tokenizer)
    : model_(std::move(model)), vae_(std::move(vae)), tok_(std::move(tokenizer)) {}

BagelTokenIds BagelInferencer::token_ids(const text::Tokenizer& tok) {
  BagelTokenIds ids;
  ids.bos = tok.require_token_id("<|im_start|>");
  ids.eos = tok.require_token_id("<|im_end|>");
  ids.start_of_image = tok.require_token_id("<|vision_start|>");
  ids.end_of_image = tok.require_token_id("<|vision_end|>");
  return ids;
}

BagelInferencer BagelInferencer::load(const std::string& dir, torch::Device device, torch::ScalarType dtype) {
  auto cfg = BagelConfig::load(dir);
  const std::string tok_path = (fs::path(dir) / "tokenizer.json").string();
  if (!fs::is_regular_file(tok_path)) throw Error(tok_path, "no such file (BAGEL needs the model's tokenizer.json)");
  auto tok = text::Tokenizer::from_file(tok_path);
  auto model = BagelImpl::load(cfg, token_ids(tok), device, dtype);
  auto vae = nn::FluxAutoEncoderImpl::load((fs::path(dir) / "ae.safetensors").string(), cfg.vae);
  if (device != torch::Device(torch::kCPU)) vae->to(device);
  vae->eval();
  return BagelInferencer(std::move(model), std::move(vae), std::move(tok));
}

std::vector<int64_t> BagelInferencer::text_ids(const std::string& text) const {
  auto enc = tok_.encode(text, /*add_special_tokens=*/false);  // Qwen2Tokenizer.encode adds none
  std::vector<int64_t> ids;
  ids.reserve(enc.size() + 2);
  ids.push_back(model_->ids.bos);
  ids.insert(ids.end(), enc.begin(), enc.end());
  ids.push_back(model_->ids.eos);
  return ids;
}

torch::Tensor BagelInferencer::update_context_text(nn::KVContext& ctx, const std::string& text) {
  return model_->add_text_block(ctx, text_ids(text));
}

io::Image BagelInferencer::vae_resize(const io::Image& img) const {
  return resize_for_transform(img, config().vae_transform);
}

BagelInferencer::ImageBlocks BagelInferencer::update_context_image(nn::KVContext& ctx, const io::Image& resized,
                                                                   bool vae, bool vit, const torch::Tensor& vae_eps,
                                                                   at::Generator* gen) {
  check(vae || vit, "update_context_image", "needs a VAE or a ViT block");
  ImageBlocks out;
  if (vae) {
    out.vae_input = image_transform(resized, config().vae_transform).unsqueeze(0);  // the padded batch of one
    const int64_t f = vae_->cfg.downsample_factor();
    if (vae_eps.defined()) {
      const std::vector<int64_t> want{1, vae_->cfg.z_channels, out.vae_input.size(2) / f, out.vae_input.size(3) / f};
      if (vae_eps.sizes().vec() != want)
        throw Error("vae_posterior_eps", "has shape " + std::string(c10::str(vae_eps.sizes())) + ", expected " +
                                             std::string(c10::str(c10::IntArrayRef(want))));
    }
    out.vae_latent = vae_->encode(out.vae_input.to(device()), vae_eps.defined() ? vae_eps.to(device()) : vae_eps, gen);
    model_->add_vae_block(ctx, out.vae_latent[0]);
  }
  if (vit) {
    auto t = image_transform(resized, config().vit_transform);
    model_->add_vit_block(ctx, t, &out.vit_tokens);
  }
  return out;
}

BagelInferencer::TextResult BagelInferencer::gen_text(const nn::KVContext& ctx_in, int max_length,
                                                      const generate::SamplerOptions& sampler, at::Generator* gen,
                                                      const std::function<bool(int64_t)>& on_token) {
  TextResult r;
  r.stop_reason = "max_length";
  nn::KVContext ctx = ctx_in.fork();  // the official deepcopy: the caller's context is unchanged
  int64_t cur = model_->ids.bos;
  int64_t pos = ctx.rope;
  max_length = static_cast<int>(generate::answer_room(pos, config().llm.llm.max_position_embeddings, max_length));
  for (int step = 0; step < max_length; ++step) {
    if (step > 0) {
      r.tokens.push_back(cur);
      if (on_token && !on_token(cur)) {
        r.stop_reason = "callback";
        break;
      }
    }
    auto logits = model_->text_step_logits(ctx, cur, pos);  // [V]
    if (step == 0) r.first_logits = logits.clone();
    cur = generate::sample_next(logits.unsqueeze(0), sampler, gen).item<int64_t>();
    ++pos;
    if (cur == model_->ids.eos) {
      r.stop_reason = "eos";
      break;
    }
  }
  return r;
}

std::string BagelInferencer::decode_text(const std::vector<int64_t>& tokens) const {
  std::vector<int32_t> ids(tokens.begin(), tokens.end());
  return tok_.decode(ids, /*skip_special_tokens=*/false);
}

GuidedVelocity BagelInferencer::guided_velocity(const FlowContexts& ctxs, const torch::Tensor& x_t, float t,
                                                const torch::Tensor& pos_ids, const FlowOptions& o) {
  GuidedVelocity g;
  const bool active = t > static_cast<float>(o.cfg_interval.first) && t <= static_cast<float>(o.cfg_interval.second);
  g.text_scale = active ? o.cfg_text_scale : 1.0;
  g.img_scale = active ? o.cfg_img_scale : 1.0;
  auto query = model_->flow_query(x_t, t, pos_ids);
  // Branch velocities in float32: the guidance and renorm arithmetic runs at full precision.
  auto velocity = [&](const nn::KVContext& ctx) { return model_->flow_velocity(ctx, query).to(torch::kFloat32); };
  g.v_cond = velocity(*ctxs.gen);
  if (g.text_scale > 1.0) g.v_text = velocity(*ctxs.cfg_text);
  if (g.img_scale > 1.0) g.v_img = velocity(*ctxs.cfg_img);

  const auto& v = g.v_cond;
  if (g.text_scale <= 1.0) {
    g.v = v;  // no CFG (the image branch, if it ran, is not used: the official code nests it)
    return g;
  }
  const double ts = g.text_scale, is = g.img_scale, rmin = o.cfg_renorm_min;
  if (o.cfg_renorm_type == "text_channel") {
    auto v_text_ = generate::cfg_combine(v, g.v_text, ts);
    auto scale = (torch::norm(v, 2, {-1}, true) / (torch::norm(v_text_, 2, {-1}, true) + 1e-8)).clamp(rmin, 1.0);
    auto v_text = v_text_ * scale;
    g.v = is > 1.0 ? generate::cfg_combine(v_text, g.v_img, is) : v_text;
  } else {
    auto v_text_ = generate::cfg_combine(v, g.v_text, ts);
    auto v_ = is > 1.0 ? generate::cfg_combine(v_text_, g.v_img, is) : v_text_;
    torch::Tensor nv, nv_;
    if (o.cfg_renorm_type == "global") {
      nv = torch::norm(v);
      nv_ = torch::norm(v_);
    } else {  // channel
      nv = torch::norm(v, 2, {-1}, true);
      nv_ = torch::norm(v_, 2, {-1}, true);
    }
    g.v = v_ * (nv / (nv_ + 1e-8)).clamp(rmin, 1.0);
  }
  return g;
}

torch::Tensor BagelInferencer::gen_image_latents(
    int height, int width, const FlowContexts& ctxs, const FlowOptions& o, torch::Tensor init_noise,
    const std::function<void(int, float, const torch::Tensor&, const GuidedVelocity&)>& on_step, bool show_progress,
    at::Generator* gen) {
  o.validate();
  const int64_t ds = config().latent_downsample();
  check(height > 0 && width > 0 && height % ds == 0 && width % ds == 0, "--height/--width",
        "must be positive multiples of " + std::to_string(ds) + " (got " + std::to_string(height) + "x" +
            std::to_string(width) + ")");
  const int64_t h = height / ds, w = width / ds;
  check(h <= config().max_latent_size && w <= config().max_latent_size, "--height/--width",
        "at most " + std::to_string(config().max_latent_size * ds) + " pixels per side for this checkpoint");
  const int64_t D = config().patch_latent_dim();
  if (!init_noise.defined()) {
    check(gen != nullptr, "gen_image_latents", "needs init_noise or a generator to draw it");
    init_noise = torch::randn({h * w, D}, *gen, torch::TensorOptions().dtype(torch::kFloat32).device(device()));
  } else if (init_noise.sizes().vec() != std::vector<int64_t>{h * w, D}) {
    throw Error("init_noise", "has shape " + std::string(c10::str(init_noise.sizes())) + ", expected [" +
                                  std::to_string(h * w) + ", " + std::to_string(D) + "] for " + std::to_string(height) +
                                  "x" + std::to_string(width));
  }
  auto pos_ids = model_->latent_position_ids(h, w);
  const std::vector<float> tp = flow_timesteps(o.num_timesteps, o.timestep_shift);

  return generate::euler_flow(
      init_noise.to(device(), torch::kFloat32), tp,
      [&](int i, float t, const torch::Tensor& x) {
        auto g = guided_velocity(ctxs, x, t, pos_ids, o);
        if (on_step) on_step(i, t, x, g);
        return g.v;
      },
      show_progress ? "flow" : "");
}

torch::Tensor BagelInferencer::decode_latents(const torch::Tensor& tokens, int height, int width) {
  const int64_t ds = config().latent_downsample();
  auto latent = unpatchify_latent(tokens, height / ds, width / ds, config().latent_patch_size, config().latent_channels());
  return vae_->decode(latent.to(device(), torch::kFloat32));
}

io::Image BagelInferencer::to_image(const torch::Tensor& decoded) {
  auto u8 = ((decoded.to(torch::kCPU, torch::kFloat32) * 0.5 + 0.5).clamp(0, 1)[0].permute({1, 2, 0}) * 255)
                .to(torch::kUInt8)
                .contiguous();
  io::Image img(static_cast<int>(u8.size(1)), static_cast<int>(u8.size(0)));
  std::memcpy(img.rgb.data(), u8.data_ptr<uint8_t>(), img.rgb.size());
  return img;
}

std::vector<std::string> interleaved_reasoning(BagelInferencer& inf, nn::KVContext& gen, int max_rounds,
                                               const InterleavedSteps& steps, at::Generator& rng) {
  std::vector<std::string> texts;
  for (int round = 0; round < max_rounds; ++round) {
    texts.push_back(steps.gen_text(gen));
    inf.update_context_text(gen, texts.back());
    if (texts.back().find("<image_start>") == std::string::npos) break;
    io::Image img = steps.draw(gen, round);
    inf.update_context_image(gen, inf.vae_resize(img), /*vae=*/true, /*vit=*/true, {}, &rng);
  }
  return texts;
}

}  // namespace omni::bagel
