#include "omni/models/bagel/family.h"

#include <chrono>
#include <filesystem>

#include "omni/core/error.h"
#include "omni/core/log.h"
#include "omni/core/progress.h"
#include "omni/generate/random.h"
#include "omni/generate/streamer.h"
#include "omni/io/checkpoint_torch.h"
#include "omni/io/image.h"
#include "omni/io/trace_torch.h"
#include "omni/io/checkpoint_export_torch.h"
#include "omni/models/bagel/inferencer.h"
#include "omni/models/bagel/packing.h"
#include "omni/models/parameter_groups.h"
#include "omni/nn/linear.h"

namespace fs = std::filesystem;

namespace omni::models::bagel {
namespace {
using omni::bagel::BagelInferencer;
using omni::bagel::FlowContexts;
using omni::bagel::FlowOptions;
using omni::bagel::GuidedVelocity;
using omni::bagel::Variant;

// ThinkMorph's system prompt (its inferencer.py uses the same string for both think modes).
const char* const kThinkMorphSystemPrompt =
    "\nLet's think step by step to answer the question. For text-based thinking, enclose the process within "
    "<think> </think>, e.g. <think> thinking process here </think>. For visual thinking, enclose the content "
    "within <image_start> </image_end>, e.g. <image_start> thinking image here </image_end>. Finally conclude "
    "with the final answer wrapped in <answer></answer> tags, i.e.<answer> answer here </answer>.\n";

// The three contexts of interleave_inference, fed with the inputs.
struct Contexts {
  nn::KVContext gen, cfg_text, cfg_img;
  int height = 1024, width = 1024;  // image_shapes: the last input image's size
  torch::Tensor last_text_hidden;
};

struct InjectedNoise {
  torch::Tensor init_noise, vae_posterior_eps;
};

InjectedNoise read_init_noise(const std::string& path) {
  InjectedNoise n;
  if (path.empty()) return n;
  auto ck = io::Checkpoint::open(path);
  if (!ck.contains("init_noise"))
    throw Error(path, "has no tensor named init_noise (the packed initial latent noise [h*w, 64])");
  n.init_noise = ck.get("init_noise", torch::kFloat32).clone();
  if (ck.contains("vae_posterior_eps")) n.vae_posterior_eps = ck.get("vae_posterior_eps", torch::kFloat32).clone();
  return n;
}

// generate: the app's text-to-image defaults (gen_image's cfg_img_scale 1.5); edit: the edit ones.
FlowOptions flow_options(const ImageSampling& s, bool edit) {
  FlowOptions f;
  if (edit) {
    f.cfg_img_scale = 2.0;
    f.cfg_interval = {0.0, 1.0};
    f.cfg_renorm_type = "text_channel";
  }
  if (s.steps) f.num_timesteps = *s.steps;
  if (s.timestep_shift) f.timestep_shift = *s.timestep_shift;
  if (s.cfg_text_scale) f.cfg_text_scale = *s.cfg_text_scale;
  if (s.cfg_img_scale) f.cfg_img_scale = *s.cfg_img_scale;
  if (s.cfg_interval) f.cfg_interval = *s.cfg_interval;
  if (s.cfg_renorm_type) f.cfg_renorm_type = *s.cfg_renorm_type;
  if (s.cfg_renorm_min) f.cfg_renorm_min = *s.cfg_renorm_min;
  f.validate();
  return f;
}

// The prompt and the image count a mode needs (checked by every entry point).
void check_inputs(const std::string& mode, const Request& r) {
  if (r.input.text().empty()) throw Error("--prompt", "required for --mode " + mode);
  if (mode == "edit" && r.input.num_images() != 1) throw Error("--image", "--mode edit takes exactly one input image");
  if (mode == "generate" && r.input.num_images() > 0)
    throw Error("--image", "--mode generate takes no input image (use --mode edit)");
}

// Family::check, before the load: the inputs, the flow flags and the noise file (which the model
// reads again when it draws).
void check_request(const std::string& mode, const Request& r) {
  check_inputs(mode, r);
  if (mode == "understand") return;
  flow_options(r.image, mode == "edit");
  read_init_noise(r.image.init_noise);
}

class Bagel : public Model, public Understands, public Generates, public Edits, public Trainable {
 public:
  Bagel(const LoadOptions& lo, Variant v)
      : variant_(v), inf_(load(lo)) {}
  std::string family() const override { return omni::bagel::variant_name(variant_); }
  c10::Device device() const override { return inf_.device(); }
  c10::ScalarType dtype() const override { return inf_.dtype(); }

  void understand(const Request& r, OutputSink& out) override {
    check_inputs("understand", r);
    c10::InferenceMode guard;
    const bool think = r.extra.get_bool("--think");
    at::Generator rng = generate::make_generator(device(), r.seed.value_or(at::default_rng_seed_val));
    Contexts c = feed_inputs(r, think ? omni::bagel::kVlmThinkSystemPrompt : nullptr, /*vae=*/false, {}, rng);
    if (c.last_text_hidden.defined())
      io::record(r.trace, "logits_last", inf_.logits(c.last_text_hidden.narrow(0, c.last_text_hidden.size(0) - 1, 1)));
    generate_text(c.gen, r.text.max_new_tokens.value_or(512), r.text.temperature.value_or(0.0), rng, out, r.trace);
    log_info("peak RSS ", format_bytes(peak_rss_bytes()));
  }

  void generate(const Request& r, OutputSink& out) override { draw_request(r, out, /*edit=*/false); }
  void edit(const Request& r, OutputSink& out) override { draw_request(r, out, /*edit=*/true); }

  // ---- training (packing.h: the official sequence plan and pack_sequence) ---------------------
  std::vector<ParameterGroup> parameter_groups() override {
    prepare_training();
    return groups_by_child(inf_.model(), is_position_table);
  }
  std::vector<std::string> layer_units() override {
    return numbered_units("language_model.model.layers", inf_.model().language_model->model->layer_ptrs.size());
  }
  void set_layer_runner(nn::LayerRunner* runner) override { inf_.model().language_model->model->layer_runner = runner; }
  bool set_sequence_parallel(nn::SequenceParallel* sp) override {
    inf_.model().language_model->model->sequence_parallel = sp;
    return true;
  }
  bool packs_micro_batches() const override { return true; }

  // The fork's bagel branch: freeze_vit = the SigLIP tower (the connector stays trainable),
  // freeze_llm = the whole MoT decoder; the rest by what each part does. The VAE is always frozen
  // (it only encodes targets, as in the official trainer). freeze_und covers no parameter: it is
  // the official detaching of the understanding rows inside the MoT (set_train_options).
  std::vector<FreezeKey> freeze_keys() override {
    return {{"freeze_vit", {"vit_model."}},
            {"freeze_und", {}},
            {"freeze_llm", {"language_model."}},
            {"freeze_mlp", {"connector."}},
            {"freeze_gen_modules", {"time_embedder.", "vae2llm.", "llm2vae.", "*_moe_gen"}},
            {"unfreeze_mot_gen", {"*_moe_gen"}},
            {"unfreeze_vit_layers", {"vit_model.vision_model.encoder.layers."}},
            {"unfreeze_lm_head", {"language_model.lm_head."}}};
  }
  void set_train_options(const std::map<std::string, double>& o) override {
    auto get = [&](const char* k, double d) { auto it = o.find(k); return it == o.end() ? d : it->second; };
    pack_.text_cond_dropout_prob = get("text_cond_dropout_prob", pack_.text_cond_dropout_prob);
    pack_.vit_cond_dropout_prob = get("vit_cond_dropout_prob", pack_.vit_cond_dropout_prob);
    pack_.vae_cond_dropout_prob = get("vae_cond_dropout_prob", pack_.vae_cond_dropout_prob);
    inf_.model().language_model->model->set_freeze_und(get("freeze_und", 0) != 0);
  }
  TrainPlan plan(const TrainExample& ex) override { return omni::bagel::plan_conversation(ex, inf_.config(), encoder()); }
  TrainLosses forward_train(const TrainExample& ex, at::Generator& gen) override {
    return forward_train_batch({&ex}, gen);
  }
  // The micro-batch packed into one sequence (positions restart per sample, attention per
  // sample and split), as PackedDataset packs samples up to its token budget.
  TrainLosses forward_train_batch(const std::vector<const TrainExample*>& batch, at::Generator& gen) override {
    prepare_training();
    auto packed = omni::bagel::pack_conversations(batch, inf_.config(), inf_.model().ids, encoder(), pack_, &gen);
    if (packed.padded_images.defined()) {
      torch::NoGradGuard ng;  // the frozen VAE provides the clean latents (posterior sampled)
      packed.batch.padded_latent = inf_.vae().encode(packed.padded_images.to(device()), {}, &gen).to(dtype());
    }
    auto out = inf_.model().forward_train(packed.batch, {}, &gen);
    TrainLosses l;
    if (out.ce.defined()) l.ce = out.ce;
    if (out.mse.defined()) l.gen = out.mse.mean(-1);  // per token, as the trainer's mse.mean(-1)
    return l;
  }
  // The weights file the checkpoint shipped (ema.safetensors / model.safetensors) with the trained
  // values and the stored sin-cos tables, plus the unchanged ae.safetensors.
  void save_weights(const std::string& dir, const WeightSource& source) override {
    const auto& cfg = inf_.config();
    auto original = io::Checkpoint::open(cfg.weights_file);
    std::string name = fs::path(cfg.weights_file).filename().string();
    if (name.size() > 11 && name.compare(name.size() - 11, 11, ".index.json") == 0) name = "model.safetensors";
    io::write_updated_safetensors(original, inf_.model(), (fs::path(dir) / name).string(), is_position_table, source);
    fs::copy_file(fs::path(cfg.dir) / "ae.safetensors", fs::path(dir) / "ae.safetensors",
                  fs::copy_options::overwrite_existing);
  }

 protected:
  static BagelInferencer load(const LoadOptions& lo) {
    StageTimer t("load model");
    // int8 decoder linears, or bf16 ones on a CPU without bf16 GEMM kernels, over fp32 (linear.h)
    nn::NarrowLinearBuild narrow(lo.narrow_linear_dtype());
    auto inf = BagelInferencer::load(lo.path, lo.device, lo.compute_dtype());
    if (lo.inference_only) {  // fp32 / bf16 CPU only; the ViT and its connector, which see every patch
      nn::store_linear_weights_transposed(*inf.model().vit_model);
      nn::store_linear_weights_transposed(*inf.model().connector);
    }
    return inf;
  }

  // Feeds the request's chunks in order into fresh contexts (interleave_inference): every image
  // is first resized with the VAE rule; images enter gen as a VAE block (when `vae`) and a ViT
  // block; cfg_text forks gen before each piece; cfg_img sees the text only.
  Contexts feed_inputs(const Request& r, const char* system_prompt, bool vae, const torch::Tensor& vae_eps,
                       at::Generator& rng) {
    Contexts c{inf_.new_context(), inf_.new_context(), inf_.new_context()};
    if (system_prompt) {
      inf_.update_context_text(c.gen, system_prompt);
      inf_.update_context_text(c.cfg_img, system_prompt);
    }
    bool eps_used = false;
    torch::Tensor vit_tokens;
    for (const auto& chunk : r.input.chunks) {
      if (chunk.is_image()) {
        const io::Image img = inf_.vae_resize(chunk.image);
        torch::Tensor eps = (vae && !eps_used) ? vae_eps : torch::Tensor();
        auto blocks = inf_.update_context_image(c.gen, img, vae, true, eps, &rng);
        eps_used = eps_used || vae;
        if (!vit_tokens.defined()) vit_tokens = blocks.vit_tokens;
        c.height = img.height;
        c.width = img.width;
        c.cfg_text = c.gen.fork();
      } else {
        c.cfg_text = c.gen.fork();
        c.last_text_hidden = inf_.update_context_text(c.gen, chunk.text);
        inf_.update_context_text(c.cfg_img, chunk.text);
      }
    }
    if (vit_tokens.defined()) io::record(r.trace, "vit_tokens", vit_tokens);
    return c;
  }

  // gen_text with streaming to the sink; returns the decoded text (as the official gen_text).
  std::string generate_text(const nn::KVContext& ctx, int max_new_tokens, double temperature, at::Generator& rng,
                            OutputSink& out, io::Trace* trace) {
    generate::TextStreamer s([this](const std::vector<int64_t>& t) { return inf_.decode_text(t); },
                             [&out](const std::string& piece) { out.text(piece); });
    generate::SamplerOptions sampler;
    sampler.temperature = temperature;  // BAGEL's sampler: no top-k / top-p
    const auto t0 = std::chrono::steady_clock::now();
    auto res = inf_.gen_text(ctx, max_new_tokens + 1, sampler, &rng, [&](int64_t id) {
      s.put(id);
      return true;
    });
    s.finish();
    out.text("\n");
    io::record(trace, "generated_ids", torch::tensor(res.tokens, torch::kLong).reshape({1, -1}));
    const double sec = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    log_info("generated ", res.tokens.size(), " tokens in ", sec, " s (",
             sec > 0 ? static_cast<double>(res.tokens.size()) / sec : 0.0, " tokens/s, stop: ", res.stop_reason, ")");
    return inf_.decode_text(res.tokens);
  }

  // gen_image + decode; the drawn noise, first velocity, final latent and decode are traced.
  io::Image draw(Contexts& c, int H, int W, const FlowOptions& f, const torch::Tensor& init_noise, at::Generator& rng,
                 io::Trace* trace) {
    FlowContexts ctxs{&c.gen, &c.cfg_text, &c.cfg_img};
    torch::Tensor latent;
    {
      StageTimer t("flow (" + std::to_string(f.num_timesteps - 1) + " steps)");
      latent = inf_.gen_image_latents(
          H, W, ctxs, f, init_noise,
          [&](int i, float, const torch::Tensor& x, const GuidedVelocity& g) {
            if (i != 0) return;
            io::record(trace, "init_noise", x);
            io::record(trace, "velocity_first", g.v);
          },
          /*show_progress=*/true, &rng);
    }
    io::record(trace, "latent_final", latent);
    torch::Tensor decoded;
    {
      StageTimer t("VAE decode");
      decoded = inf_.decode_latents(latent, H, W);
    }
    io::record(trace, "decoded", decoded);
    return BagelInferencer::to_image(decoded);
  }

  void draw_request(const Request& r, OutputSink& out, bool edit) {
    check_inputs(edit ? "edit" : "generate", r);
    const FlowOptions f = flow_options(r.image, edit);
    const InjectedNoise noise = read_init_noise(r.image.init_noise);
    const bool think = r.extra.get_bool("--think");
    c10::InferenceMode guard;
    // Draws in the official order: the edit's VAE posterior, then the initial noise.
    at::Generator rng = generate::make_generator(device(), generate::seed_or_fresh(r.seed));
    Contexts c = feed_inputs(r, think ? omni::bagel::kGenThinkSystemPrompt : nullptr, /*vae=*/true,
                             noise.vae_posterior_eps, rng);
    if (think) {
      log_info("thinking (plan before drawing)");
      std::string plan = generate_text(c.gen, r.text.max_new_tokens.value_or(512), r.text.temperature.value_or(0.0), rng, out, r.trace);
      inf_.update_context_text(c.gen, plan);
    }
    const int H = edit ? c.height : r.image.height.value_or(1024);
    const int W = edit ? c.width : r.image.width.value_or(1024);
    out.image(draw(c, H, W, f, noise.init_noise, rng, r.trace));
    log_info("wrote ", W, "x", H, " image; peak RSS ", format_bytes(peak_rss_bytes()));
  }

  Variant variant_;
  BagelInferencer inf_;

 private:
  static bool is_position_table(const std::string& name) {
    return name == "vit_pos_embed.pos_embed" || name == "latent_pos_embed.pos_embed";
  }
  // The trainer's view of the weights (float32 sin-cos tables, frozen), once.
  void prepare_training() {
    if (training_) return;
    inf_.model().use_training_position_tables();
    inf_.model().train();
    training_ = true;
  }
  omni::bagel::Encode encoder() const {
    return [this](const std::string& t) {
      auto e = inf_.tokenizer().encode(t, /*add_special_tokens=*/false);
      return std::vector<int64_t>(e.begin(), e.end());
    };
  }
  omni::bagel::PackOptions pack_;
  bool training_ = false;
};

// ThinkMorph: understanding with an image runs interleave_inference(think=True,
// understanding_output=False): text rounds; each round containing "<image_start>" draws an image
// (CFG contexts frozen after the inputs) and feeds it back (VAE + ViT), up to 3 images.
class ThinkMorph final : public Bagel {
 public:
  explicit ThinkMorph(const LoadOptions& lo) : Bagel(lo, Variant::ThinkMorph) {}

  void understand(const Request& r, OutputSink& out) override {
    if (r.input.num_images() == 0) return Bagel::understand(r, out);
    check_inputs("understand", r);
    // ThinkMorph's notebook / eval values are BAGEL's edit defaults (cfg 4 / 2, [0, 1], text_channel).
    const FlowOptions f = flow_options(r.image, /*edit=*/true);
    const double temperature = r.text.temperature.value_or(0.3);  // do_sample=True, text_temperature=0.3
    const int max_rounds = 3;
    c10::InferenceMode guard;
    at::Generator rng = generate::make_generator(device(), generate::seed_or_fresh(r.seed));
    Contexts c = feed_inputs(r, kThinkMorphSystemPrompt, /*vae=*/true, {}, rng);
    log_info("thinkmorph: interleaved reasoning (up to ", max_rounds, " images, text temperature ", temperature, ")");
    omni::bagel::InterleavedSteps steps;
    bool first = true;
    steps.gen_text = [&](const nn::KVContext& gen) {
      std::string t = generate_text(gen, r.text.max_new_tokens.value_or(512), temperature, rng, out, first ? r.trace : nullptr);
      first = false;
      return t;
    };
    steps.draw = [&](const nn::KVContext&, int round) {
      auto img = draw(c, c.height, c.width, f, {}, rng, r.trace);  // c.gen is the live context
      const std::string where = out.image(img);
      log_info("thinkmorph: image ", round + 1, " -> ", where);
      return img;
    };
    auto texts = omni::bagel::interleaved_reasoning(inf_, c.gen, max_rounds, steps, rng);
    // the official loop ends after the last image without another text round: no answer then
    const std::string last = texts.back().find("<image_start>") == std::string::npos ? texts.back() : "";
    const auto a = last.find("<answer>");
    const auto b = last.find("</answer>");
    if (a != std::string::npos && b != std::string::npos && b > a) out.text("answer: " + last.substr(a + 8, b - a - 8) + "\n");
    log_info("peak RSS ", format_bytes(peak_rss_bytes()));
  }
};

std::vector<std::string> flags_for(const std::string& mode, bool thinkmorph) {
  const std::vector<std::string> text = {"--max_new_tokens", "--temperature", "--think"};
  std::vector<std::string> image = {"--steps", "--timestep_shift", "--cfg_text_scale", "--cfg_img_scale",
                                    "--cfg_interval", "--cfg_renorm_type", "--cfg_renorm_min", "--init_noise"};
  std::vector<std::string> out = text;
  if (mode == "understand" && !thinkmorph) return out;
  if (mode == "understand") image.pop_back();  // the interleaved loop draws its own noise
  out.insert(out.end(), image.begin(), image.end());
  if (mode == "generate") out.insert(out.end(), {"--height", "--width"});
  return out;
}

Family make_family(Variant v) {
  Family f;
  f.name = omni::bagel::variant_name(v);
  if (v == Variant::Bagel) f.aliases = {"bagel_mot"};
  f.modes = {"understand", "generate", "edit"};
  f.detect = [v](const std::string& dir) {
    Variant found;
    return omni::bagel::looks_like_bagel(dir, &found) && found == v;
  };
  f.read_image = [](const std::string& path) { return io::read_image_composited(path); };  // pil_img2rgb
  f.check = check_request;
  f.load = [v](const LoadOptions& lo) -> std::unique_ptr<Model> {
    if (v == Variant::ThinkMorph) return std::make_unique<ThinkMorph>(lo);
    return std::make_unique<Bagel>(lo, Variant::Bagel);
  };
  f.extra_flags = {{"--think", "write a plan (a reasoning trace) before answering or drawing", FlagSpec::Kind::Switch}};
  const bool tm = v == Variant::ThinkMorph;
  f.flags = [tm](const std::string& mode) { return flags_for(mode, tm); };
  return f;
}

}  // namespace

Family bagel_family() { return make_family(Variant::Bagel); }
Family thinkmorph_family() { return make_family(Variant::ThinkMorph); }

}  // namespace omni::models::bagel
