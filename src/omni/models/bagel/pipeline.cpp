#include "omni/models/bagel/pipeline.h"

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <random>

#include "omni/core/error.h"
#include "omni/core/log.h"
#include "omni/core/progress.h"
#include "omni/io/checkpoint_torch.h"
#include "omni/io/image.h"
#include "omni/io/trace_torch.h"
#include "omni/models/bagel/inferencer.h"
#include "omni/models/janus/pipeline.h"  // numbered_output

namespace fs = std::filesystem;

namespace omni::models::bagel {
namespace {
using omni::bagel::BagelInferencer;
using omni::bagel::FlowContexts;
using omni::bagel::FlowOptions;
using omni::bagel::GuidedVelocity;

// ThinkMorph's system prompt (its inferencer.py uses the same string for both think modes).
const char* const kThinkMorphSystemPrompt =
    "\nLet's think step by step to answer the question. For text-based thinking, enclose the process within "
    "<think> </think>, e.g. <think> thinking process here </think>. For visual thinking, enclose the content "
    "within <image_start> </image_end>, e.g. <image_start> thinking image here </image_end>. Finally conclude "
    "with the final answer wrapped in <answer></answer> tags, i.e.<answer> answer here </answer>.\n";

// One piece of the user's input, in order: text or an image (VAE-resized once the model is loaded).
struct InputItem {
  bool is_image = false;
  std::string text;
  io::Image image;
};

// --prompt with <image> markers: each marker takes the next --image at that place; without
// markers the images come first, then the prompt (the official __call__(image, text) order).
std::vector<InputItem> build_inputs(const InferOptions& o) {
  std::vector<io::Image> imgs;
  for (const auto& p : o.images) imgs.push_back(io::read_image_composited(p));  // pil_img2rgb: RGBA on white
  const std::string marker = "<image>";
  size_t n_markers = 0;
  for (size_t p = o.prompt.find(marker); p != std::string::npos; p = o.prompt.find(marker, p + marker.size()))
    ++n_markers;
  if (n_markers > 0 && n_markers != imgs.size())
    throw Error("--prompt", "has " + std::to_string(n_markers) + " <image> marker(s) but " +
                                std::to_string(imgs.size()) + " --image given");
  std::vector<InputItem> items;
  auto add_image = [&](const io::Image& img) {
    InputItem it;
    it.is_image = true;
    it.image = img;
    items.push_back(std::move(it));
  };
  auto add_text = [&](const std::string& t) {
    if (t.empty()) return;
    InputItem it;
    it.text = t;
    items.push_back(std::move(it));
  };
  if (n_markers == 0) {
    for (const auto& img : imgs) add_image(img);
    add_text(o.prompt);
    return items;
  }
  size_t pos = 0, k = 0;
  for (size_t p = o.prompt.find(marker); p != std::string::npos; p = o.prompt.find(marker, pos)) {
    add_text(o.prompt.substr(pos, p - pos));
    add_image(imgs[k++]);
    pos = p + marker.size();
  }
  add_text(o.prompt.substr(pos));
  return items;
}

// The three contexts of interleave_inference, fed with the inputs.
struct Contexts {
  nn::KVContext gen, cfg_text, cfg_img;
  int height = 1024, width = 1024;  // image_shapes: the last input image's size
  torch::Tensor last_text_hidden;
  torch::Tensor vit_tokens;
};

Contexts feed_inputs(BagelInferencer& inf, const std::vector<InputItem>& items, const char* system_prompt,
                     bool vae_blocks, const torch::Tensor& vae_eps, io::Trace& trace) {
  Contexts c{inf.new_context(), inf.new_context(), inf.new_context()};
  if (system_prompt) {
    inf.update_context_text(c.gen, system_prompt);
    inf.update_context_text(c.cfg_img, system_prompt);
  }
  bool eps_used = false;
  for (const auto& it : items) {
    if (it.is_image) {
      torch::Tensor eps = (vae_blocks && !eps_used) ? vae_eps : torch::Tensor();
      auto blocks = inf.update_context_image(c.gen, it.image, vae_blocks, true, eps);
      eps_used = eps_used || vae_blocks;
      if (!c.vit_tokens.defined()) c.vit_tokens = blocks.vit_tokens;
      c.height = it.image.height;
      c.width = it.image.width;
      c.cfg_text = c.gen.fork();
    } else {
      c.cfg_text = c.gen.fork();
      c.last_text_hidden = inf.model().add_text_block(c.gen, inf.text_ids(it.text));
      inf.update_context_text(c.cfg_img, it.text);
    }
  }
  if (c.vit_tokens.defined()) trace.record("vit_tokens", c.vit_tokens);
  return c;
}

// Streams decoded text to stdout as tokens arrive (held back while a UTF-8 sequence is open).
class TextStreamer {
 public:
  explicit TextStreamer(const BagelInferencer& inf) : inf_(inf) {}
  bool on_token(int64_t id) {
    tokens_.push_back(id);
    emit(false);
    return true;
  }
  void finish() {
    emit(true);
    std::fputc('\n', stdout);
    std::fflush(stdout);
  }
  const std::vector<int64_t>& tokens() const { return tokens_; }

 private:
  void emit(bool final) {
    std::string text = inf_.decode_text(tokens_);
    const bool partial = text.size() >= 3 && text.compare(text.size() - 3, 3, "\xEF\xBF\xBD") == 0;
    if ((final || !partial) && text.size() > printed_.size() && text.compare(0, printed_.size(), printed_) == 0) {
      std::fwrite(text.data() + printed_.size(), 1, text.size() - printed_.size(), stdout);
      std::fflush(stdout);
      printed_ = text;
    }
  }
  const BagelInferencer& inf_;
  std::vector<int64_t> tokens_;
  std::string printed_;
};

// Text generation with streaming; returns the decoded text (as the official gen_text).
std::string generate_text_streamed(BagelInferencer& inf, const nn::KVContext& ctx, int max_new_tokens, double temperature,
                                   io::Trace* trace) {
  TextStreamer s(inf);
  const auto t0 = std::chrono::steady_clock::now();
  auto r = inf.gen_text(ctx, max_new_tokens + 1, temperature > 0, temperature > 0 ? temperature : 1.0,
                        [&](int64_t id) { return s.on_token(id); });
  s.finish();
  if (trace) trace->record("generated_ids", torch::tensor(r.tokens, torch::kLong).reshape({1, -1}));
  const double sec = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  log_info("generated ", r.tokens.size(), " tokens in ", sec, " s (",
           sec > 0 ? static_cast<double>(r.tokens.size()) / sec : 0.0, " tokens/s, stop: ", r.stop_reason, ")");
  return inf.decode_text(r.tokens);
}

void seed_rng(const InferOptions& o) {
  uint64_t seed;
  if (o.seed) {
    seed = static_cast<uint64_t>(*o.seed);
  } else {
    seed = (static_cast<uint64_t>(std::random_device{}()) << 32) ^ std::random_device{}();
    log_info("seed ", seed, " (pass --seed to reproduce)");
  }
  torch::manual_seed(seed);
}

struct InjectedNoise {
  torch::Tensor init_noise, vae_posterior_eps;
};
InjectedNoise read_init_noise(const InferOptions& o) {
  InjectedNoise n;
  if (!o.init_noise) return n;
  auto ck = io::Checkpoint::open(*o.init_noise);
  if (!ck.contains("init_noise"))
    throw Error(*o.init_noise, "has no tensor named init_noise (the packed initial latent noise [h*w, 64])");
  n.init_noise = ck.get("init_noise", torch::kFloat32).clone();
  if (ck.contains("vae_posterior_eps")) n.vae_posterior_eps = ck.get("vae_posterior_eps", torch::kFloat32).clone();
  return n;
}

FlowOptions flow_options(const InferOptions& o, bool edit) {
  FlowOptions f;  // generate: the app's text-to-image defaults (gen_image's cfg_img_scale 1.5)
  if (edit) {
    f.cfg_img_scale = 2.0;
    f.cfg_interval = {0.0, 1.0};
    f.cfg_renorm_type = "text_channel";
  }
  if (o.steps) f.num_timesteps = *o.steps;
  if (o.timestep_shift) f.timestep_shift = *o.timestep_shift;
  if (o.cfg_text_scale) f.cfg_text_scale = *o.cfg_text_scale;
  if (o.cfg_img_scale) f.cfg_img_scale = *o.cfg_img_scale;
  if (o.cfg_interval) f.cfg_interval = *o.cfg_interval;
  if (o.cfg_renorm_type) f.cfg_renorm_type = *o.cfg_renorm_type;
  if (o.cfg_renorm_min) f.cfg_renorm_min = *o.cfg_renorm_min;
  f.validate();
  return f;
}

void check_output_path(const std::string& out, const std::string& mode) {
  if (out.empty()) throw Error("--output", "required for --mode " + mode + " (the PNG to write)");
  const fs::path parent = fs::path(out).parent_path();
  if (!parent.empty() && !fs::is_directory(parent)) throw Error(out, "the output directory does not exist");
}

// gen_image + decode + PNG; returns the decoded image.
io::Image draw(BagelInferencer& inf, Contexts& c, int H, int W, const FlowOptions& f, const torch::Tensor& init_noise,
               io::Trace& trace, const std::string& out_path) {
  FlowContexts ctxs{&c.gen, &c.cfg_text, &c.cfg_img};
  torch::Tensor noise = init_noise;
  if (!noise.defined()) {
    const int64_t ds = inf.config().latent_downsample();
    noise = torch::randn({(H / ds) * (W / ds), inf.config().patch_latent_dim()});
  }
  trace.record("init_noise", noise);
  torch::Tensor latent;
  {
    StageTimer t("flow (" + std::to_string(f.num_timesteps - 1) + " steps)");
    latent = inf.gen_image_latents(
        H, W, ctxs, f, noise,
        [&](int i, float, const torch::Tensor&, const GuidedVelocity& g) {
          if (i == 0) trace.record("velocity_first", g.v);
        },
        /*show_progress=*/true);
  }
  trace.record("latent_final", latent);
  torch::Tensor decoded;
  {
    StageTimer t("VAE decode");
    decoded = inf.decode_latents(latent, H, W);
  }
  trace.record("decoded", decoded);
  auto img = BagelInferencer::to_image(decoded);
  io::write_png(out_path, img);
  return img;
}

BagelInferencer load(const InferOptions& o) {
  StageTimer t("load model");
  return BagelInferencer::load(o.model_path);
}

// What every mode starts with: inputs checked before the (slow) model load, the model, the
// trace, the generator seeded (`random_seed`: a fresh logged seed when --seed is absent; else
// only an explicit --seed), and the inputs resized.
struct Session {
  BagelInferencer inf;
  io::Trace trace;
  std::vector<InputItem> items;
};
Session start(const InferOptions& o, bool random_seed) {
  // BAGEL's sampler is softmax(logits / temperature) + multinomial, with no nucleus / top-k step.
  if (o.top_p) throw Error("--top_p", "not supported by BAGEL's official sampler (use --temperature)");
  if (o.cfg_weight) throw Error("--cfg_weight", "is Janus' flag; BAGEL uses --cfg_text_scale / --cfg_img_scale");
  if (o.parallel_size != 1) throw Error("--parallel_size", "BAGEL generates one image per run (as the official inferencer)");
  auto items = build_inputs(o);  // markers checked and images decoded before the (slow) load
  Session s{load(o), io::Trace(o.trace), {}};
  if (random_seed)
    seed_rng(o);
  else if (o.seed)
    torch::manual_seed(static_cast<uint64_t>(*o.seed));
  for (auto& it : items)
    if (it.is_image) it.image = s.inf.vae_resize(it.image);  // interleave_inference resizes every input first
  s.items = std::move(items);
  return s;
}

int run_understand(const InferOptions& o) {
  if (o.prompt.empty()) throw Error("--prompt", "required for --mode understand (the question)");
  c10::InferenceMode guard;
  Session s = start(o, /*random_seed=*/false);
  auto& inf = s.inf;
  auto& trace = s.trace;
  const auto& items = s.items;
  Contexts c = feed_inputs(inf, items, o.think ? omni::bagel::kVlmThinkSystemPrompt : nullptr, /*vae=*/false, {}, trace);
  if (c.last_text_hidden.defined())
    trace.record("logits_last", inf.model().logits(c.last_text_hidden.narrow(0, c.last_text_hidden.size(0) - 1, 1)));
  generate_text_streamed(inf, c.gen, o.max_new_tokens, o.temperature.value_or(0.0), &trace);
  trace.save();
  log_info("peak RSS ", format_bytes(peak_rss_bytes()));
  return 0;
}

int run_generate_or_edit(const InferOptions& o, bool edit) {
  const std::string mode = edit ? "edit" : "generate";
  if (o.prompt.empty()) throw Error("--prompt", edit ? "required for --mode edit (the instruction)"
                                                     : "required for --mode generate (the image description)");
  check_output_path(o.output, mode);
  if (edit && o.images.size() != 1) throw Error("--image", "--mode edit takes exactly one input image");
  if (!edit && !o.images.empty()) throw Error("--image", "--mode generate takes no input image (use --mode edit)");
  if (edit && (o.height || o.width))
    throw Error("--height/--width", "not used by --mode edit: the output has the input image's size after the "
                                    "official VAE resize");
  const FlowOptions f = flow_options(o, edit);
  const InjectedNoise noise = read_init_noise(o);
  c10::InferenceMode guard;
  Session s = start(o, /*random_seed=*/true);
  auto& inf = s.inf;
  auto& trace = s.trace;
  const auto& items = s.items;
  const char* sys = o.think ? omni::bagel::kGenThinkSystemPrompt : nullptr;
  Contexts c = feed_inputs(inf, items, sys, /*vae=*/true, noise.vae_posterior_eps, trace);
  if (o.think) {
    log_info("thinking (plan before drawing)");
    std::string plan = generate_text_streamed(inf, c.gen, o.max_new_tokens, o.temperature.value_or(0.0), &trace);
    inf.update_context_text(c.gen, plan);
  }
  const int H = edit ? c.height : o.height.value_or(1024);
  const int W = edit ? c.width : o.width.value_or(1024);
  draw(inf, c, H, W, f, noise.init_noise, trace, o.output);
  std::printf("%s\n", o.output.c_str());
  trace.save();
  log_info("wrote ", W, "x", H, " image; peak RSS ", format_bytes(peak_rss_bytes()));
  return 0;
}

// ThinkMorph's interleave_inference(think=True, understanding_output=False): text rounds; each
// round whose text contains "<image_start>" draws an image (CFG contexts frozen after the inputs)
// and feeds it back (VAE + ViT), up to max_rounds = 3 images.
int run_thinkmorph(const InferOptions& o) {
  if (o.prompt.empty()) throw Error("--prompt", "required (the question)");
  if (o.images.empty()) throw Error("--image", "ThinkMorph's interleaved reasoning starts from an input image");
  const std::string out = o.output.empty() ? "thinkmorph.png" : o.output;
  check_output_path(out, "understand");
  // ThinkMorph's notebook / eval values are BAGEL's edit defaults (cfg 4 / 2, [0, 1], text_channel).
  const FlowOptions f = flow_options(o, /*edit=*/true);
  const double temperature = o.temperature.value_or(0.3);  // do_sample=True, text_temperature=0.3
  const int max_think = o.max_new_tokens;
  const int max_rounds = 3;
  c10::InferenceMode guard;
  Session s = start(o, /*random_seed=*/true);
  auto& inf = s.inf;
  auto& trace = s.trace;
  const auto& items = s.items;
  Contexts c = feed_inputs(inf, items, kThinkMorphSystemPrompt, /*vae=*/true, {}, trace);
  log_info("thinkmorph: interleaved reasoning (up to ", max_rounds, " images, text temperature ", temperature, ")");
  omni::bagel::InterleavedSteps steps;
  bool first = true;
  steps.gen_text = [&](const nn::KVContext& gen) {
    std::string t = generate_text_streamed(inf, gen, max_think, temperature, first ? &trace : nullptr);
    first = false;
    return t;
  };
  steps.draw = [&](const nn::KVContext&, int round) {
    const std::string path = omni::models::janus::numbered_output(out, round);
    auto img = draw(inf, c, c.height, c.width, f, {}, trace, path);  // c.gen is the live context
    std::printf("[image %d: %s]\n", round + 1, path.c_str());
    std::fflush(stdout);
    return img;
  };
  auto texts = omni::bagel::interleaved_reasoning(inf, c.gen, max_rounds, steps);
  // the official loop ends after the last image without another text round: no answer then
  const std::string last_text = texts.back().find("<image_start>") == std::string::npos ? texts.back() : "";
  const auto a = last_text.find("<answer>");
  const auto b = last_text.find("</answer>");
  if (a != std::string::npos && b != std::string::npos && b > a)
    std::printf("answer: %s\n", last_text.substr(a + 8, b - a - 8).c_str());
  trace.save();
  log_info("peak RSS ", format_bytes(peak_rss_bytes()));
  return 0;
}

}  // namespace

void register_bagel() {
  using omni::bagel::Variant;
  ModelEntry b;
  b.model_type = "bagel";
  b.aliases = {"bagel_mot"};
  b.modes = {"understand", "generate", "edit"};
  b.detect = [](const std::string& dir) {
    Variant v;
    return omni::bagel::looks_like_bagel(dir, &v) && v == Variant::Bagel;
  };
  b.infer = [](const InferOptions& o) {
    if (o.mode == "understand") return run_understand(o);
    return run_generate_or_edit(o, o.mode == "edit");
  };
  register_model(std::move(b));

  ModelEntry t;
  t.model_type = "thinkmorph";
  t.modes = {"understand", "generate", "edit"};
  t.detect = [](const std::string& dir) {
    Variant v;
    return omni::bagel::looks_like_bagel(dir, &v) && v == Variant::ThinkMorph;
  };
  t.infer = [](const InferOptions& o) {
    if (o.mode == "understand") return o.images.empty() ? run_understand(o) : run_thinkmorph(o);
    return run_generate_or_edit(o, o.mode == "edit");
  };
  register_model(std::move(t));
}

}  // namespace omni::models::bagel
