#include "omni/models/sensenova_u1/family.h"

#include <algorithm>
#include <chrono>
#include <cstring>
#include <filesystem>

#include "omni/core/error.h"
#include "omni/core/log.h"
#include "omni/core/progress.h"
#include "omni/generate/context_window.h"
#include "omni/generate/flow.h"
#include "omni/generate/random.h"
#include "omni/generate/sampler.h"
#include "omni/generate/streamer.h"
#include "omni/io/checkpoint_torch.h"
#include "omni/io/hf_config.h"
#include "omni/io/image.h"
#include "omni/io/trace_torch.h"
#include "omni/models/sensenova_u1/guidance.h"
#include "omni/models/sensenova_u1/model.h"
#include "omni/models/sensenova_u1/processor.h"
#include "omni/models/sensenova_u1/training.h"
#include "omni/models/parameter_groups.h"
#include "omni/io/checkpoint_export_torch.h"
#include "omni/nn/init_weights.h"
#include "omni/nn/linear.h"
#include "omni/text/tokenizer.h"

namespace fs = std::filesystem;

namespace omni::models::sensenova_u1 {
namespace {
using namespace omni::sensenova_u1;

// Official defaults (examples/{vqa,t2i,editing,interleave}/inference.py and the model's methods).
constexpr int kVqaMaxNewTokens = 1024;
constexpr int kInterleaveMaxNewTokens = 8192;  // interleave_gen without a generation_config
constexpr int kMaxThinkTokens = 1024;          // _generate_think
constexpr int kMaxInterleaveImages = 10;
constexpr uint64_t kDefaultSeed = 42;          // every example's --seed default
constexpr int64_t kVqaMinPixels = 256 * 256, kVqaMaxPixels = 2048 * 2048;
constexpr int64_t kEditMinPixels = 512 * 512;
constexpr int64_t kEditTargetPixels = 2048 * 2048;  // the editing example's output-size rule
constexpr int kT2iSide = 2048;
constexpr int kInterleaveWidth = 2048, kInterleaveHeight = 1152;  // its "16:9" default bucket

// The empty think block: the official training's opening of every answer that does not think.
constexpr const char* kEmptyThink = "<think>\n\n</think>\n\n";
// The condition query's assistant opening (t2i_generate / it2i_generate): an empty think block and
// <img>, or an open think block the model fills (--think).
std::string gen_opening(bool think) { return think ? "<think>\n" : std::string(kEmptyThink) + "<img>"; }

int64_t edit_max_pixels(size_t n) { return std::min<int64_t>(kVqaMaxPixels, (int64_t{4096} * 4096) / std::max<int64_t>(1, n)); }

bool is_flow_mode(const std::string& mode) { return mode == "generate" || mode == "edit" || mode == "interleave"; }

GuidanceOptions guidance_for(const std::string& mode, const Request& r) {
  GuidanceOptions g;
  g.rule = mode == "generate" ? GuidanceRule::TextToImage : mode == "edit" ? GuidanceRule::Edit : GuidanceRule::Interleave;
  g.text_scale = r.image.cfg_text_scale.value_or(4.0);
  g.img_scale = r.image.cfg_img_scale.value_or(1.0);
  if (r.image.cfg_interval) g.interval = *r.image.cfg_interval;
  g.norm = r.extra.get("--cfg_norm", "none");
  g.validate();
  return g;
}

struct FlowSettings {
  int steps = 50;
  double shift = 3.0, t_eps = 0.02;
};
FlowSettings flow_settings(const Request& r) {
  FlowSettings f;
  f.steps = r.image.steps.value_or(50);
  f.shift = r.image.timestep_shift.value_or(3.0);
  f.t_eps = r.extra.get_double("--t_eps", 0.02);
  check(f.steps >= 1, "--steps", "must be at least 1 (Euler steps)");
  check(f.shift > 0, "--timestep_shift", "must be positive");
  check(f.t_eps > 0 && f.t_eps < 1, "--t_eps", "must be in (0, 1)");
  return f;
}

// Positive multiples of the token size (32 for the released checkpoints: one token per 32x32),
// with the image's tokens inside the model's context (64000^2 asked for a 49 GB allocation).
void check_size(int w, int h, int64_t token_px, int64_t max_tokens) {
  check(w >= token_px && h >= token_px && w % token_px == 0 && h % token_px == 0, "--width/--height",
        "must be positive multiples of " + std::to_string(token_px) + " (one token per " + std::to_string(token_px) + "x" +
            std::to_string(token_px) + " pixels; got " + std::to_string(w) + "x" + std::to_string(h) + ")");
  const int64_t tokens = (w / token_px) * (h / token_px);
  check(tokens < max_tokens, "--width/--height",
        std::to_string(w) + "x" + std::to_string(h) + " is " + std::to_string(tokens) +
            " image tokens, more than the model's context of " + std::to_string(max_tokens) +
            " (max_position_embeddings)");
}

torch::Tensor read_init_noise(const std::string& path, int64_t H, int64_t W) {
  auto ck = io::Checkpoint::open(path);
  if (!ck.contains("init_noise"))
    throw Error(path, "has no tensor named init_noise (the N(0, 1) draw of the initial image [1, 3, H, W])");
  auto n = ck.get("init_noise", torch::kFloat32).clone();
  check(n.dim() == 4 && n.size(0) == 1 && n.size(1) == 3 && n.size(2) == H && n.size(3) == W, path,
        "init_noise must be [1, 3, " + std::to_string(H) + ", " + std::to_string(W) + "] for this size");
  return n;
}

// The user turn of a request: text with <image> where the prompt put markers; images given
// without markers go first, one "<image>\n" each (edit with several: "Image-k:<image>\n").
std::string user_turn(const Request& r, bool numbered) {
  const auto& in = r.input;
  if (in.placed_by_markers) {
    std::string s;
    for (const auto& c : in.chunks) s += c.is_image() ? "<image>" : c.text;
    return s;
  }
  std::string s;
  const size_t n = in.num_images();
  for (size_t i = 0; i < n; ++i) s += numbered && n > 1 ? "Image-" + std::to_string(i + 1) + ":<image>\n" : "<image>\n";
  return s + in.text();
}

io::Image to_image(const torch::Tensor& decoded) {  // [1, 3, H, W] in [0, 1] -> round(x * 255)
  auto u8 = (decoded.to(torch::kCPU, torch::kFloat32)[0].permute({1, 2, 0}) * 255).round().to(torch::kUInt8).contiguous();
  io::Image img(static_cast<int>(u8.size(1)), static_cast<int>(u8.size(0)));
  std::memcpy(img.rgb.data(), u8.data_ptr<uint8_t>(), img.rgb.size());
  return img;
}

// Family::check, before the load.
void check_request(const std::string& mode, const Request& r) {
  if (r.input.text().empty() && mode != "interleave") throw Error("--prompt", "required for --mode " + mode);
  if (mode == "generate" && r.input.num_images() > 0)
    throw Error("--image", "--mode generate takes no input image (use --mode edit)");
  if (mode == "edit" && r.input.num_images() == 0) throw Error("--image", "--mode edit needs at least one input image");
  if (!is_flow_mode(mode)) return;
  guidance_for(mode, r);
  flow_settings(r);
  if (r.image.width.has_value() != r.image.height.has_value())
    throw Error("--width/--height", "give both or neither");
  if (r.image.width) check(*r.image.width > 0 && *r.image.height > 0, "--width/--height", "must be positive");
  if (!r.image.init_noise.empty() && r.image.width) read_init_noise(r.image.init_noise, *r.image.height, *r.image.width);
}

class U1 : public Model, public Understands, public Generates, public Edits, public Interleaves, public Trainable {
 public:
  explicit U1(const LoadOptions& lo) : cfg_(U1Config::from_dir(lo.path)), tok_(load_tokenizer(lo.path)), ids_(SpecialIds::from(tok_)) {
    check(static_cast<int64_t>(tok_.vocab_size()) <= cfg_.llm.vocab_size, lo.path,
          "tokenizer has more ids than llm_config.vocab_size");
    StageTimer t("load model");
    // int8 decoder linears, or bf16 ones on a CPU without bf16 GEMM kernels, over fp32 (linear.h)
    nn::NarrowLinearBuild narrow(lo.narrow_linear_dtype());
    model_ = NeoChatImpl::load(cfg_, lo.device, lo.compute_dtype());
  }
  std::string family() const override { return "u1"; }
  c10::Device device() const override { return model_->device(); }
  c10::ScalarType dtype() const override { return model_->dtype(); }

  // ---- understand: chat() + HF generate (greedy by default) ------------------------------------
  void understand(const Request& r, OutputSink& out) override {
    c10::InferenceMode guard;
    std::vector<NativeImage> imgs;
    for (const auto& c : r.input.chunks)
      if (c.is_image()) imgs.push_back(load_image_native(c.image, cfg_, und_pixels().first, und_pixels().second));
    const bool no_think = cfg_.omni.enable_thinking == false;  // the model's own opening (config "omni")
    Prefix p = build_prefix(chat_prompt("", user_turn(r, false)) + (no_think ? kEmptyThink : ""), imgs,
                            r.trace);
    U1Context ctx = model_->make_context();
    auto h = model_->prefill(ctx, p.embeds, p.indexes);
    auto logits = model_->logits(h.narrow(0, h.size(0) - 1, 1)).to(torch::kFloat32);
    io::record(r.trace, "logits_last", logits);

    generate::SamplerOptions so;
    so.temperature = r.text.temperature.value_or(0.0);
    if (!so.greedy()) {  // the VQA example's sampling values, HF's top_k default
      so.top_p = r.text.top_p.value_or(0.9);
      so.top_k = r.text.top_k.value_or(50);
    }
    at::Generator rng = generate::make_generator(device(), r.seed.value_or(kDefaultSeed));
    const int max_new = static_cast<int>(generate::answer_room(
        static_cast<int64_t>(p.ids.size()), cfg_.llm.max_position_embeddings, r.text.max_new_tokens.value_or(kVqaMaxNewTokens)));
    generate::TextStreamer s([this](const std::vector<int64_t>& t) { return decode(t, true); },
                             [&out](const std::string& piece) { out.text(piece); });
    std::vector<torch::Tensor> step_logits;
    const auto t0 = std::chrono::steady_clock::now();
    for (int i = 0; i < max_new; ++i) {
      if (r.trace) step_logits.push_back(logits[0]);
      const int64_t id = generate::sample_next(logits, so, &rng).item<int64_t>();
      if (id == ids_.im_end) break;
      s.put(id);
      if (i + 1 == max_new) break;
      logits = model_->decode_step(ctx, id).unsqueeze(0);
    }
    s.finish();
    out.text("\n");
    const auto& toks = s.tokens();
    io::record(r.trace, "generated_ids", torch::tensor(toks, torch::kLong).reshape({1, -1}));
    if (r.trace && !step_logits.empty()) io::record(r.trace, "step_logits", torch::stack(step_logits));
    const double sec = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    log_info("generated ", toks.size(), " tokens in ", sec, " s; peak RSS ", format_bytes(peak_rss_bytes()));
  }

  // ---- generate: t2i_generate --------------------------------------------------------------------
  void generate(const Request& r, OutputSink& out) override {
    c10::InferenceMode guard;
    const auto g = guidance_for("generate", r);
    const auto f = flow_settings(r);
    const auto size = cfg_.omni.image_size.value_or(std::make_pair(kT2iSide, kT2iSide));
    const int W = r.image.width.value_or(size.first), H = r.image.height.value_or(size.second);
    check_size(W, H, cfg_.token_pixels(), cfg_.llm.max_position_embeddings);
    const bool think = r.extra.get_bool("--think");
    Branches b;
    const std::string cond_q = chat_prompt(system_message_for_gen(cfg_), r.input.text()) + gen_opening(think);
    b.cond = text_branch(cond_q, r.trace, "cond_");
    if (think) think_then_open_image(b.cond, out, r.trace);
    if (g.needs_uncond_branch()) b.uncond = text_branch(chat_prompt("", "") + "<img>", r.trace, "uncond_");
    draw_one(b, g, f, W, H, r, out);
  }

  // ---- edit: it2i_generate ------------------------------------------------------------------------
  void edit(const Request& r, OutputSink& out) override {
    c10::InferenceMode guard;
    const auto g = guidance_for("edit", r);
    const auto f = flow_settings(r);
    const auto imgs = conditioning_images(r);
    const size_t n = imgs.size();
    // the editing example: the first input's aspect ratio at 2048^2 pixels
    const auto target = cfg_.omni.image_pixels ? cfg_.omni.image_pixels->second : kEditTargetPixels;
    const auto [W, H] = output_size(r, target, target, 0, 0);
    const bool think = r.extra.get_bool("--think") || cfg_.omni.think_before_edit;
    Branches b;
    std::string images_only;
    for (size_t i = 0; i < n; ++i) images_only += "<image>";
    const std::string cond_q = chat_prompt(system_message_for_gen(cfg_), user_turn(r, true)) + gen_opening(think);
    b.cond = image_branch(cond_q, imgs, r.trace, "cond_");
    if (think) think_then_open_image(b.cond, out, r.trace);
    if (g.needs_image_branch()) b.image = image_branch(chat_prompt("", images_only) + "<img>", imgs, r.trace, "img_cond_");
    if (g.needs_uncond_branch()) b.uncond = image_branch(chat_prompt("", "") + "<img>", {}, r.trace, "uncond_");
    draw_one(b, g, f, W, H, r, out);
  }

  // ---- interleave: interleave_gen -----------------------------------------------------------------
  void interleave(const Request& r, OutputSink& out) override {
    c10::InferenceMode guard;
    const auto g = guidance_for("interleave", r);
    const auto f = flow_settings(r);
    const bool think = !r.extra.get_bool("--no_think");
    const auto imgs = conditioning_images(r);
    const size_t n = imgs.size();
    // the example follows the first input image (smart_resize's defaults), else its 16:9 bucket
    const auto px = cfg_.omni.image_pixels.value_or(std::make_pair(int64_t{65536}, int64_t{4194304}));
    const auto fallback = cfg_.omni.image_size.value_or(std::make_pair(kInterleaveWidth, kInterleaveHeight));
    const auto [W, H] = output_size(r, px.first, px.second, fallback.first, fallback.second);
    std::string images_only;
    for (size_t i = 0; i < n; ++i) images_only += "<image>";
    Branches b;
    b.cond = image_branch(chat_prompt(kSystemMessageForInterleave, user_turn(r, false)) + (think ? "" : kEmptyThink),
                          imgs, r.trace, "cond_");
    b.image = image_branch(chat_prompt("", images_only), imgs, nullptr, "");
    b.uncond = image_branch(chat_prompt("", "") + "<img>", {}, nullptr, "");
    const int64_t uncond_t = b.uncond.ctx.t;

    at::Generator rng = generate::make_generator(device(), r.seed.value_or(kDefaultSeed));
    const int max_new = r.text.max_new_tokens.value_or(kInterleaveMaxNewTokens);
    int generated = 0, images = 0;
    std::vector<int64_t> all_ids;
    int64_t next = b.cond.last_logits.argmax(-1).item<int64_t>();
    while (true) {
      generate::TextStreamer s([this](const std::vector<int64_t>& t) { return decode(t, true); },
                               [&out](const std::string& piece) { out.text(piece); });
      bool hit_max = false;
      while (next != ids_.im_end && next != ids_.img_start) {
        s.put(next);
        all_ids.push_back(next);
        ++generated;
        next = model_->decode_step(b.cond.ctx, next).argmax(-1).item<int64_t>();
        if (generated >= max_new) {
          hit_max = true;
          break;
        }
      }
      s.finish();
      if (next == ids_.im_end || hit_max || images >= kMaxInterleaveImages) break;
      // <img>: into cond and the images-only branch, then a full flow loop
      model_->decode_step(b.cond.ctx, next);
      model_->decode_step(b.image.ctx, next);
      all_ids.push_back(next);
      b.cond.gen_t = b.cond.ctx.t + 1;
      b.image.gen_t = b.image.ctx.t + 1;
      b.uncond.gen_t = uncond_t + 1;
      out.text("\n");
      auto x = draw(b, g, f, H, W, images == 0 ? r.image.init_noise : std::string(), rng, images == 0 ? r.trace : nullptr,
                    /*clamp_output=*/false);
      out.image(to_image(((x * 0.5) + 0.5).clamp(0, 1)));
      ++images;
      // the drawn image back through the understanding embedder, then </img>
      auto last = append_generated_image(b.cond.ctx, x);
      append_generated_image(b.image.ctx, x);
      next = last.argmax(-1).item<int64_t>();
    }
    out.text("\n");
    io::record(r.trace, "generated_ids", torch::tensor(all_ids, torch::kLong).reshape({1, -1}));
    log_info("interleave: ", generated, " text tokens, ", images, " image(s); peak RSS ", format_bytes(peak_rss_bytes()));
  }

  // ---- training (training.h: the official sequence, mask and losses) --------------------------
  std::vector<ParameterGroup> parameter_groups() override { return groups_by_child(*model_); }
  std::vector<std::string> layer_units() override {
    return numbered_units("language_model.model.layers", model_->language_model->model->layer_ptrs.size());
  }
  void set_layer_runner(nn::LayerRunner* runner) override { model_->language_model->model->layer_runner = runner; }
  bool set_sequence_parallel(nn::SequenceParallel* sp) override {
    model_->language_model->model->sequence_parallel = sp;
    return true;
  }
  bool packs_micro_batches() const override { return true; }

  // The fork's keys mapped onto U1's tree: the understanding patch embedder is its "ViT" (no
  // transformer layers, so no unfreeze_vit_layers), its 2x2 merge projection the connector.
  std::vector<FreezeKey> freeze_keys() override {
    return {{"freeze_vit", {"vision_model."}},
            {"freeze_llm", {"language_model."}},
            {"freeze_mlp", {"vision_model.embeddings.dense_embedding."}},
            {"freeze_gen_modules", {"fm_modules.", "*_mot_gen"}},
            {"unfreeze_mot_gen", {"*_mot_gen"}},
            {"unfreeze_lm_head", {"language_model.lm_head."}}};
  }
  TrainPlan plan(const TrainExample& ex) override {
    const auto s = build_train_sequence(ex, cfg_, tok_, ids_);
    TrainPlan p;
    p.seq_len = static_cast<int64_t>(s.ids.size());
    p.ce_tokens = s.ce_tokens();
    p.gen_tokens = s.gen_tokens();
    p.ce_norm = s.ce_norm();
    p.gen_norm = s.gen_norm();
    return p;
  }
  void set_train_options(const std::map<std::string, double>& options) override {
    auto get = [&](const char* key, double fallback) {
      const auto it = options.find(key);
      return it == options.end() ? fallback : it->second;
    };
    dropout_.txt = get("cfg_txt_uncond_drop_prob", dropout_.txt);
    dropout_.img = get("cfg_img_uncond_drop_prob", dropout_.img);
    dropout_.txtimg = get("cfg_txtimg_uncond_drop_prob", dropout_.txtimg);
  }
  std::optional<TrainExample> draw_sample_variant(const TrainExample& ex, at::Generator& gen) override {
    return omni::sensenova_u1::draw_sample_variant(ex, dropout_, [&gen] { return generate::uniform01(gen); });
  }
  TrainLosses forward_train(const TrainExample& ex, at::Generator& gen) override { return forward_train_batch({&ex}, gen); }
  // The micro-batch packed into one sequence of documents (the official PackedDataset): one
  // forward; losses in sample order.
  TrainLosses forward_train_batch(const std::vector<const TrainExample*>& batch, at::Generator& gen) override {
    if (!training_) {
      model_->train();
      training_ = true;
    }
    std::vector<TrainSequence> docs;
    for (const auto* ex : batch) docs.push_back(build_train_sequence(*ex, cfg_, tok_, ids_));
    auto out = omni::sensenova_u1::forward_train(*model_, pack_sequences(std::move(docs)), &gen);
    TrainLosses l;
    l.ce = out.ce;
    l.gen = out.gen;
    return l;
  }
  void save_weights(const std::string& dir, const WeightSource& source) override {
    io::write_updated_safetensors(io::Checkpoint::open(cfg_.weights), *model_, (fs::path(dir) / "model.safetensors").string(),
                                  {}, source);
  }

 private:
  bool training_ = false;
  CondDropout dropout_;
  struct Prefix {
    std::vector<int64_t> ids;
    std::vector<GridHW> grids;
    torch::Tensor indexes, embeds;
  };
  // One CFG branch: its cache, the t its generation tokens take, its prefix's last logits.
  struct Branch {
    U1Context ctx;
    int64_t gen_t = 0;
    torch::Tensor last_logits;  // [V] float32
    bool ready() const { return gen_t > 0; }
  };
  struct Branches {
    Branch cond, image, uncond;
  };

  static text::Tokenizer load_tokenizer(const std::string& dir) {
    const std::string path = (fs::path(dir) / "tokenizer.json").string();
    if (!fs::is_regular_file(path)) throw Error(path, "no such file (SenseNova-U1 needs the model's tokenizer.json)");
    return text::Tokenizer::from_file(path);
  }
  std::vector<int64_t> encode(const std::string& s) const {
    auto e = tok_.encode(s, /*add_special_tokens=*/true);
    return {e.begin(), e.end()};
  }
  std::string decode(const std::vector<int64_t>& t, bool skip_special) const {
    return tok_.decode(std::vector<int32_t>(t.begin(), t.end()), skip_special);
  }
  // The input images of an edit / interleave request (it2i_generate's load_image_native limits).
  std::vector<NativeImage> conditioning_images(const Request& r) const {
    std::vector<NativeImage> imgs;
    const size_t n = r.input.num_images();
    for (const auto& c : r.input.chunks)
      if (c.is_image()) {
        const auto px = cfg_.omni.image_pixels.value_or(std::make_pair(kEditMinPixels, edit_max_pixels(n)));
        imgs.push_back(load_image_native(c.image, cfg_, px.first, px.second));
      }
    return imgs;
  }
  // Understanding inputs: load_image_native's vqa limits, or the model's own (config "omni").
  std::pair<int64_t, int64_t> und_pixels() const {
    return cfg_.omni.image_pixels.value_or(std::make_pair(kVqaMinPixels, kVqaMaxPixels));
  }

  // (width, height): --width/--height, else the first input image smart-resized into
  // [min_px, max_px] (factor 32), else the fallback.
  std::pair<int, int> output_size(const Request& r, int64_t min_px, int64_t max_px, int fallback_w, int fallback_h) const {
    int W = fallback_w, H = fallback_h;
    if (r.image.width) {
      W = *r.image.width;
      H = *r.image.height;
    } else {
      for (const auto& c : r.input.chunks)
        if (c.is_image()) {
          const auto hw = smart_resize(c.image.height, c.image.width, cfg_.token_pixels(), min_px, max_px);
          H = static_cast<int>(hw.first);
          W = static_cast<int>(hw.second);
          break;
        }
    }
    check_size(W, H, cfg_.token_pixels(), cfg_.llm.max_position_embeddings);
    return {W, H};
  }

  void check_prompt_fits(size_t tokens) const {
    generate::check_prompt_fits(static_cast<int64_t>(tokens), cfg_.llm.max_position_embeddings,
                                "tokens with its template and image slots");
  }

  // A query with <image> markers -> ids, 3-D indexes and input embeddings (image rows from the
  // understanding embedder).
  Prefix build_prefix(const std::string& query, const std::vector<NativeImage>& imgs, io::Trace* trace,
                      const std::string& tag = "") {
    Prefix p;
    std::vector<int64_t> counts;
    std::vector<torch::Tensor> pixels;
    for (const auto& im : imgs) {
      counts.push_back(im.tokens(cfg_.merge()));
      p.grids.push_back(im.grid);
      pixels.push_back(im.pixel_values);
    }
    p.ids = encode(expand_images(query, counts));
    check_prompt_fits(p.ids.size());
    p.indexes = thw_indexes(p.ids, p.grids, cfg_.merge(), ids_).to(device());
    auto ids = torch::tensor(p.ids, torch::kLong);
    torch::Tensor vis;
    if (!pixels.empty()) {
      auto pv = torch::cat(pixels);
      vis = model_->vision_embeds(pv, p.grids);
      io::record(trace, "pixel_values", pv);
      io::record(trace, "vision_embeds", vis);
    }
    p.embeds = model_->embed_prefix(ids, vis, ids_.img_context);
    io::record(trace, tag + "input_ids", ids.reshape({1, -1}));
    io::record(trace, tag + "indexes", p.indexes);
    io::record(trace, tag + (tag.empty() ? "inputs_embeds" : "prefix_embeds"), p.embeds);
    return p;
  }
  Branch prefill_branch(const Prefix& p) {
    Branch b;
    b.ctx = model_->make_context();
    auto h = model_->prefill(b.ctx, p.embeds, p.indexes);
    b.last_logits = model_->logits(h.narrow(0, h.size(0) - 1, 1)).to(torch::kFloat32)[0];
    b.gen_t = b.ctx.t + 1;
    return b;
  }
  // _build_t2i_text_inputs: t = 0..L-1 (no images).
  Branch text_branch(const std::string& query, io::Trace* trace, const std::string& tag) {
    Prefix p;
    p.ids = encode(query);
    check_prompt_fits(p.ids.size());
    const auto T = static_cast<int64_t>(p.ids.size());
    auto t = torch::arange(T, torch::kLong);
    p.indexes = torch::stack({t, torch::zeros_like(t), torch::zeros_like(t)}).to(device());
    auto ids = torch::tensor(p.ids, torch::kLong);
    p.embeds = model_->language_model->model->embed(ids.to(device()));
    io::record(trace, tag + "input_ids", ids.reshape({1, -1}));
    io::record(trace, tag + "indexes", p.indexes);
    return prefill_branch(p);
  }
  Branch image_branch(const std::string& query, const std::vector<NativeImage>& imgs, io::Trace* trace,
                      const std::string& tag) {
    return prefill_branch(build_prefix(query, imgs, trace, tag));
  }

  // _generate_think: greedy ids from the prefix's last logits, each fed back; stops before
  // <|im_end|> or after feeding </think> (at most 1024); then "\n\n<img>" appended causally.
  void think_then_open_image(Branch& b, OutputSink& out, io::Trace* trace) {
    std::vector<int64_t> think;
    std::vector<torch::Tensor> first_logits;
    generate::TextStreamer s([this](const std::vector<int64_t>& t) { return decode(t, false); },
                             [&out](const std::string& piece) { out.text(piece); });
    torch::Tensor logits = b.last_logits;
    for (int i = 0; i < kMaxThinkTokens; ++i) {
      if (trace && first_logits.size() < 8) first_logits.push_back(logits);
      const int64_t id = logits.argmax(-1).item<int64_t>();
      if (id == ids_.im_end) break;
      think.push_back(id);
      s.put(id);
      logits = model_->decode_step(b.ctx, id);
      if (id == ids_.think_end) break;
    }
    s.finish();
    out.text("\n");
    io::record(trace, "think_ids", torch::tensor(think, torch::kLong).reshape({1, -1}));
    if (!first_logits.empty()) io::record(trace, "think_logits_first8", torch::stack(first_logits));
    auto append = tok_.encode("\n\n<img>", /*add_special_tokens=*/false);
    model_->append_text(b.ctx, {append.begin(), append.end()});
    b.gen_t = b.ctx.t + 1;
    log_info("thought ", think.size(), " tokens");
  }

  // The flow loop over the branches: noise (drawn or injected) x noise_scale, Euler from t = 0
  // to 1 on the image, every step predicting x through each branch it needs. Returns the final
  // image [1, 3, H, W] in [-1, 1] (float32), traced as `final`, and `decoded` (clamped to [0, 1]).
  torch::Tensor draw(Branches& b, const GuidanceOptions& g, const FlowSettings& f, int H, int W,
                     const std::string& init_noise_file, at::Generator& rng, io::Trace* trace, bool clamp_output = true) {
    const int64_t p = cfg_.token_pixels(), th = H / p, tw = W / p;
    const double noise_scale = cfg_.noise_scale_for(th * tw);
    torch::Tensor noise = init_noise_file.empty()
                              ? at::randn({1, 3, H, W}, rng, torch::TensorOptions().dtype(dtype()).device(device()))
                              : read_init_noise(init_noise_file, H, W).to(device());
    auto x0 = noise.to(torch::kFloat32) * noise_scale;
    io::record(trace, "init_noise", noise);
    io::record(trace, "x_init", x0);
    const auto ts = flow_timesteps(f.steps, f.shift);
    io::record(trace, "timesteps", torch::tensor(std::vector<float>(ts.begin(), ts.end())));
    auto idx_c = model_->image_indexes(th, tw, b.cond.gen_t);
    torch::Tensor idx_i = b.image.ready() ? model_->image_indexes(th, tw, b.image.gen_t) : torch::Tensor();
    torch::Tensor idx_u = b.uncond.ready() ? model_->image_indexes(th, tw, b.uncond.gen_t) : torch::Tensor();
    const double noise_ratio = noise_scale / cfg_.noise_scale_max_value;
    std::vector<torch::Tensor> steps;
    // The state, z, the branch velocities and their guidance stay float32 whatever the weights'
    // dtype (as BAGEL's flow state); the model sees the image in its dtype.
    auto velocity = [&](int i, float t, const torch::Tensor& img) {
      auto z = patchify(img, p, /*channel_first=*/false);
      std::vector<torch::Tensor> parts;
      auto x = model_->gen_inputs(img, torch::scalar_tensor(t), noise_ratio, i == 0 && trace ? &parts : nullptr);
      auto predict = [&](Branch& br, const torch::Tensor& idx) {
        return velocity_from_x(model_->predict_x(br.ctx, x, idx).to(torch::kFloat32).unsqueeze(0), z, t, f.t_eps);
      };
      StepVelocities v;
      v.cond = predict(b.cond, idx_c);
      const auto [need_img, need_unc] = branches_for_step(g, t);
      if (need_img) v.image = predict(b.image, idx_i);
      if (need_unc) v.uncond = predict(b.uncond, idx_u);
      auto guided = guide(g, v, t, i);
      if (i == 0 && trace) {
        io::record(trace, "gen_patch_input_first", patchify(img, cfg_.patch_size(), true)[0]);
        io::record(trace, "gen_vision_embeds_first", parts[0]);
        io::record(trace, "timestep_emb_first", parts[1]);
        if (parts[2].defined()) io::record(trace, "noise_scale_emb_first", parts[2]);
        io::record(trace, "gen_embeds_first", x);
        io::record(trace, "z_first", z);
        io::record(trace, "v_cond_first", v.cond);
        if (v.image.defined()) io::record(trace, "v_img_cond_first", v.image);
        if (v.uncond.defined()) io::record(trace, "v_uncond_first", v.uncond);
        io::record(trace, "velocity_first", guided);
      }
      return unpatchify(guided, p, H, W);
    };
    torch::Tensor final_img;
    {
      StageTimer timer("flow (" + std::to_string(f.steps) + " steps)");
      final_img = generate::euler_flow(x0, ts, velocity, "u1 flow");
    }
    io::record(trace, "final", final_img);
    if (!clamp_output) return final_img;
    auto decoded = (final_img * 0.5 + 0.5).clamp(0, 1);
    io::record(trace, "decoded", decoded);
    return decoded;
  }

  // generate / edit: the request's generator (or its noise file), one image to `out`.
  void draw_one(Branches& b, const GuidanceOptions& g, const FlowSettings& f, int W, int H, const Request& r,
                OutputSink& out) {
    at::Generator rng = generate::make_generator(device(), r.seed.value_or(kDefaultSeed));
    out.image(to_image(draw(b, g, f, H, W, r.image.init_noise, rng, r.trace)));
    log_info("wrote ", W, "x", H, " image; peak RSS ", format_bytes(peak_rss_bytes()));
  }

  // interleave_gen's re-encoding: the image's und-embedder tokens (t + 1, grid h/w) and </img>
  // (t + 2) appended; the image rows do not see </img>. Returns the logits after </img>.
  torch::Tensor append_generated_image(U1Context& ctx, const torch::Tensor& x) {
    const int64_t ps = cfg_.patch_size(), H = x.size(2), W = x.size(3);
    std::vector<GridHW> grid = {{H / ps, W / ps}};
    auto vis = model_->vision_embeds(renormalize_generated(x.to(dtype()), ps), grid);
    const int64_t N = vis.size(0);
    const auto li = torch::TensorOptions().dtype(torch::kLong).device(device());
    auto end = model_->language_model->model->embed(torch::tensor({ids_.img_end}, li));
    auto rows = torch::cat({vis, end.to(vis.scalar_type())});
    auto grid_idx = model_->image_indexes(H / cfg_.token_pixels(), W / cfg_.token_pixels(), ctx.t + 1);
    auto tail = torch::tensor({ctx.t + 2, int64_t{0}, int64_t{0}}, li).view({3, 1});
    auto idx = torch::cat({grid_idx, tail}, 1);
    const auto fo = torch::TensorOptions().dtype(torch::kFloat32).device(device());
    auto mask = torch::zeros({N + 1, ctx.kv.length + N + 1}, fo);
    mask.narrow(0, 0, N).narrow(1, ctx.kv.length + N, 1).fill_(-std::numeric_limits<float>::infinity());
    auto h = model_->append(ctx, rows, idx, mask);
    return model_->logits(h.narrow(0, N, 1)).to(torch::kFloat32)[0];
  }

  U1Config cfg_;
  text::Tokenizer tok_;
  SpecialIds ids_;
  std::shared_ptr<NeoChatImpl> model_;
};

bool looks_like_u1(const std::string& dir) {
  const fs::path cfg = fs::path(dir) / "config.json";
  if (!fs::is_regular_file(cfg)) return false;
  try {
    return io::HfConfig::from_file(cfg.string()).get_or<std::string>("model_type", "") == "neo_chat";
  } catch (const Error&) {
    return false;
  }
}

std::vector<std::string> flags_for(const std::string& mode) {
  if (mode == "understand") return {"--max_new_tokens", "--temperature", "--top_k", "--top_p"};
  std::vector<std::string> f = {"--width", "--height", "--steps", "--timestep_shift", "--cfg_text_scale",
                                "--cfg_interval", "--cfg_norm", "--t_eps", "--init_noise"};
  if (mode == "generate") f.push_back("--think");
  if (mode == "edit") f.insert(f.end(), {"--think", "--cfg_img_scale"});
  if (mode == "interleave") f.insert(f.end(), {"--no_think", "--cfg_img_scale", "--max_new_tokens"});
  return f;
}

// omni init: a new NEOChatModel of the config, every weight drawn HF-style (llm_config's
// initializer_range, 0.02 by default) from the seed, written in the requested dtype.
void init_weights(const InitOptions& o) {
  const auto cfg = U1Config::from_file(o.config_file);
  const double range = io::HfConfig::from_file(o.config_file).sub("llm_config").get_or<double>("initializer_range", 0.02);
  check(range > 0, o.config_file, "llm_config.initializer_range must be positive");
  NeoChatImpl m(cfg);
  at::Generator gen = generate::make_generator(torch::kCPU, o.seed);
  nn::init_weights_hf_style(m, range, gen);
  io::write_module_safetensors(m, o.weights_file, o.dtype);
}

}  // namespace

Family u1_family() {
  Family f;
  f.name = "u1";
  f.aliases = {"neo_chat", "sensenova_u1"};
  f.modes = {"understand", "generate", "edit", "interleave"};
  f.detect = looks_like_u1;
  // load_image_native: RGBA pasted on white, everything else convert("RGB")
  f.read_image = [](const std::string& path) { return io::read_image_composited(path); };
  f.load = [](const LoadOptions& lo) -> std::unique_ptr<Model> { return std::make_unique<U1>(lo); };
  f.check = check_request;
  f.init = init_weights;
  f.extra_flags = {
      {"--cfg_norm", "CFG rescaling: none | global | channel | cfg_zero_star (generate only) (SenseNova-U1; default none)",
       FlagSpec::Kind::Text},
      {"--t_eps", "lower clamp of 1 - t in the velocity (SenseNova-U1; default 0.02)", FlagSpec::Kind::Number},
      {"--no_think", "interleave without the <think> block (SenseNova-U1 interleave thinks by default)",
       FlagSpec::Kind::Switch},
      {"--think", "write a plan (a reasoning trace) before answering or drawing", FlagSpec::Kind::Switch}};
  f.flags = flags_for;
  return f;
}

}  // namespace omni::models::sensenova_u1
