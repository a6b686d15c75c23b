#include "omni/models/janus/family.h"

#include <cstring>
#include <filesystem>

#include "omni/core/error.h"
#include "omni/core/log.h"
#include "omni/core/memory.h"
#include "omni/core/progress.h"
#include "omni/generate/context_window.h"
#include "omni/generate/random.h"
#include "omni/generate/streamer.h"
#include "omni/io/checkpoint_export_torch.h"
#include "omni/io/image.h"
#include "omni/io/image_tensor.h"
#include "omni/io/trace_torch.h"
#include "omni/models/janus/chat_processor.h"
#include "omni/models/janus/model.h"
#include "omni/models/parameter_groups.h"
#include "omni/nn/linear.h"
#include "omni/text/tokenizer.h"

namespace fs = std::filesystem;

namespace omni::models::janus {
namespace {

torch::Tensor ids_tensor(const std::vector<int32_t>& ids) {
  return torch::tensor(std::vector<int64_t>(ids.begin(), ids.end()), torch::kInt64).unsqueeze(0);
}

void check_request(const std::string& mode, const Request& r) {
  if (mode != "generate") return;
  if (r.input.num_images() > 0) throw Error("--image", "Janus text-to-image takes no input image");
  if (r.extra.get_int("--parallel_size", 1) < 1) throw Error("--parallel_size", "must be at least 1");
  r.extra.get_double("--cfg_weight", 5.0);  // a number, finite: checked before the load
}

// The model records into the request's trace for one call only (the trace dies with the request).
struct TraceScope {
  JanusModel& m;
  TraceScope(JanusModel& model, io::Trace* t) : m(model) { m.set_trace(t); }
  ~TraceScope() { m.set_trace(nullptr); }
};

class Janus final : public Model, public Understands, public Generates, public Trainable {
 public:
  explicit Janus(const LoadOptions& lo)
      : tok_(load_tokenizer(lo.path)), proc_(ProcessorConfig::load(lo.path)), ids_(SpecialIds::lookup(tok_, proc_)) {
    StageTimer t("load model");
    // int8 decoder linears, or bf16 ones on a CPU without bf16 GEMM kernels, over fp32 (linear.h)
    nn::NarrowLinearBuild narrow(lo.narrow_linear_dtype());
    model_ = JanusModel::load(lo.path, {lo.device, lo.compute_dtype()});
    if (lo.inference_only) {  // fp32 / bf16 CPU only; the tower and its projector, which see 576 rows an image
      nn::store_linear_weights_transposed(*model_->net()->vision_model);
      nn::store_linear_weights_transposed(*model_->net()->aligner);
    }
    path_ = lo.path;
  }
  std::string family() const override { return "janus"; }
  c10::Device device() const override { return model_->device(); }
  c10::ScalarType dtype() const override { return model_->dtype(); }

  void understand(const Request& r, OutputSink& out) override {
    c10::InferenceMode guard;
    TraceScope ts(*model_, r.trace);
    std::vector<io::Image> imgs;
    for (const auto& c : r.input.chunks)
      if (c.is_image()) imgs.push_back(preprocess_image(c.image, proc_));
    // The official "deepseek" SFT format with the official system prompt.
    const std::string prompt = render_deepseek(
        {{"<|User|>", user_content(r.input, proc_.image_tag)}, {"<|Assistant|>", ""}}, kDefaultSystemPrompt);
    auto ids = expand_image_slots(tok_.encode(prompt, true), ids_.image, ids_.image_start, ids_.image_end,
                                  proc_.num_image_tokens);
    const int64_t context = model_->config().language.max_position_embeddings;
    const int64_t prompt_tokens = static_cast<int64_t>(ids.size());
    generate::check_prompt_fits(prompt_tokens, context, "tokens with the image slots");
    torch::Tensor input_ids = ids_tensor(ids);
    io::record(r.trace, "input_ids", input_ids);

    torch::Tensor inputs_embeds = embed(input_ids, imgs, r.trace);

    TextGenOptions g;
    g.max_new_tokens = static_cast<int>(generate::answer_room(prompt_tokens, context, r.text.max_new_tokens.value_or(512)));
    g.eos_token_ids = {ids_.eos};
    g.temperature = r.text.temperature.value_or(0.0);  // greedy unless asked
    g.top_k = r.text.top_k.value_or(50);               // HF GenerationConfig defaults
    g.top_p = r.text.top_p.value_or(1.0);
    // Without --seed the draws are those of an unseeded official script (torch's default seed).
    at::Generator gen = generate::make_generator(device(), r.seed.value_or(at::default_rng_seed_val));
    g.generator = &gen;
    generate::TextStreamer streamer([this](const std::vector<int64_t>& t) { return decode(t); },
                                    [&out](const std::string& piece) { out.text(piece); });
    g.on_token = [&](int64_t token) {
      streamer.put(token);
      return true;
    };
    auto res = model_->understand(inputs_embeds, g);
    streamer.finish();
    out.text("\n");
    io::record(r.trace, "generated_ids", torch::tensor(res.tokens, torch::kInt64).reshape({1, -1}));
    const double n = static_cast<double>(res.tokens.size());
    log_info("prompt ", res.prompt_tokens, " tokens in ", res.prefill_seconds, " s; generated ", res.tokens.size(),
             " tokens in ", res.decode_seconds, " s (", res.decode_seconds > 0 ? n / res.decode_seconds : 0.0,
             " tokens/s, stop: ", res.stop_reason, "); peak RSS ", format_bytes(peak_rss_bytes()));
  }

  void generate(const Request& r, OutputSink& out) override {
    check_request("generate", r);
    const int64_t parallel = r.extra.get_int("--parallel_size", 1);
    c10::InferenceMode guard;
    TraceScope ts(*model_, r.trace);  // records generated_tokens and decoded
    const std::string prompt =
        render_deepseek({{"<|User|>", r.input.text()}, {"<|Assistant|>", ""}}, "") + proc_.image_start_tag;
    auto ids32 = tok_.encode(prompt, true);
    std::vector<int64_t> ids(ids32.begin(), ids32.end());

    ImageGenOptions g;
    g.parallel_size = parallel;
    g.cfg_weight = r.extra.get_double("--cfg_weight", 5.0);
    g.temperature = r.text.temperature.value_or(1.0);
    g.image_size = proc_.image_size;
    at::Generator gen = generate::make_generator(device(), r.seed.value_or(at::default_rng_seed_val));
    g.generator = &gen;
    if (r.trace && r.trace->enabled())
      g.on_step = [&](int64_t step, const torch::Tensor& raw, const torch::Tensor&) {
        if (step == 0) r.trace->record("raw_logits_first", raw);
      };
    auto res = model_->generate_image_tokens(ids, ids_.pad, g);
    io::record(r.trace, "cfg_input_tokens", res.cfg_input_tokens);

    // The KV cache is freed by now, but its heap pages stay resident (core/memory.h keeps freed
    // memory for reuse) and the VQ decoder's activations did not fit in them: Janus-Pro-7B bf16
    // peaked at cache + activations (14.70 -> 15.25 GiB). Given back, the peak is the larger.
    const uint64_t rss_held = rss_bytes();
    return_free_memory_to_os();
    log_debug("freed memory returned before the VQ decode: RSS ", format_bytes(rss_held), " -> ",
              format_bytes(rss_bytes()));
    torch::Tensor decoded;
    {
      StageTimer t("VQ decode");
      decoded = model_->decode_image_tokens(res.tokens, res.grid);
    }
    auto u8 = JanusModel::to_uint8_images(decoded).contiguous();  // [P, H, W, 3]
    for (int64_t i = 0; i < u8.size(0); ++i) {
      io::Image img(static_cast<int>(u8.size(2)), static_cast<int>(u8.size(1)));
      auto row = u8[i].contiguous();
      std::memcpy(img.rgb.data(), row.data_ptr<uint8_t>(), img.rgb.size());
      out.image(img);
    }
    log_info("generated ", u8.size(0), " image(s) of ", res.tokens.size(1), " tokens in ", res.seconds,
             " s; peak RSS ", format_bytes(peak_rss_bytes()));
  }

  // ---- training ------------------------------------------------------------------------------
  std::vector<ParameterGroup> parameter_groups() override { return groups_by_child(*model_->net()); }

  std::vector<std::string> layer_units() override {
    return numbered_units("language_model.model.layers", model_->net()->language_model->model->layer_ptrs.size());
  }
  void set_layer_runner(nn::LayerRunner* runner) override { model_->net()->language_model->model->layer_runner = runner; }
  bool set_sequence_parallel(nn::SequenceParallel* sp) override {
    model_->net()->language_model->model->sequence_parallel = sp;
    return true;
  }

  // The fork's freezing keys for Janus (the fork's janus branch: freeze_vit = vision_model,
  // freeze_vae = the VQ tokenizer gen_vision_model); the rest by what each part does here.
  std::vector<FreezeKey> freeze_keys() override {
    return {{"freeze_vit", {"vision_model."}},
            {"freeze_vae", {"gen_vision_model."}},
            {"freeze_llm", {"language_model."}},
            {"freeze_mlp", {"aligner."}},
            {"freeze_gen_modules", {"gen_aligner.", "gen_embed.", "gen_head."}},
            {"unfreeze_vit_layers", {"vision_model.vision_tower.blocks."}},
            {"unfreeze_lm_head", {"language_model.lm_head."}}};
  }

  TrainPlan plan(const TrainExample& ex) override {
    const Prepared p = prepare(ex);
    TrainPlan tp;
    if (p.image_target) {
      tp.gen_tokens = vq_codes_per_image();
      tp.seq_len = static_cast<int64_t>(p.ids.size()) + tp.gen_tokens;
    } else {
      tp.seq_len = static_cast<int64_t>(p.ids.size());
      for (size_t k = 1; k < p.labels.size(); ++k) tp.ce_tokens += p.labels[k] != -100;  // shifted labels
    }
    return tp;
  }

  // Text turns: the deepseek format, CE on every assistant turn's tokens (its end-of-sentence
  // included), transformers' ForCausalLMLoss. An assistant image (the last turn, alone): the
  // t2i prompt of the preceding turns, the image's VQ codes, and CE of gen_head on each code.
  // An unset system prompt is what `omni infer` uses for the mode: the official
  // VLChatProcessor.system_prompt for text, none for text-to-image.
  TrainLosses forward_train(const TrainExample& ex, at::Generator&) override {
    const Prepared p = prepare(ex);
    TrainLosses out;
    if (p.image_target) {
      torch::Tensor codes;
      {
        torch::NoGradGuard ng;  // the VQ tokenizer only provides targets
        const io::Image img = preprocess_image(ex.turns.back().content.chunks[0].image, proc_);
        auto pixels = io::images_to_tensor({img}, proc_.norm);
        codes = model_->vq_encode(pixels).codes.reshape({1, -1});
      }
      auto prompt_ids = torch::tensor(p.ids, torch::kInt64).unsqueeze(0);
      out.gen = model_->image_gen_loss(prompt_ids, codes).token_ce;
      return out;
    }
    std::vector<io::Image> imgs;
    for (const auto& t : ex.turns)
      for (const auto& c : t.content.chunks)
        if (c.is_image()) imgs.push_back(preprocess_image(c.image, proc_));
    auto embeds = embed(torch::tensor(p.ids, torch::kInt64).unsqueeze(0), imgs, nullptr);
    out.ce = model_->text_loss(embeds, torch::tensor(p.labels, torch::kInt64).unsqueeze(0)).token_ce;
    return out;
  }

  // The checkpoint's own layout: model.safetensors with every original tensor (the trained
  // values where the module holds them).
  void save_weights(const std::string& dir, const WeightSource& source) override {
    io::write_updated_safetensors(JanusModel::weights_checkpoint(path_), *model_->net(), dir + "/model.safetensors", {},
                                  source);
  }

 private:
  // A conversation as token ids: text turns with labels on the assistant spans; or a
  // text-to-image prompt (ids only) when the last assistant turn is an image.
  struct Prepared {
    bool image_target = false;
    std::vector<int64_t> ids, labels;
  };
  Prepared prepare(const TrainExample& ex) const {
    check(!ex.turns.empty() && ex.turns.back().role == "assistant", "training example",
          "must end with an assistant turn");
    for (size_t i = 0; i < ex.turns.size(); ++i)
      check(ex.turns[i].role == (i % 2 == 0 ? "user" : "assistant"), "training example",
            "turns must alternate user / assistant (turn " + std::to_string(i + 1) + " is \"" + ex.turns[i].role + "\")");
    std::vector<Message> msgs;
    for (const auto& t : ex.turns)
      msgs.push_back({t.role == "user" ? "<|User|>" : "<|Assistant|>", user_content(t.content, proc_.image_tag)});
    Prepared p;
    const auto& last = ex.turns.back().content;
    if (last.num_images() > 0) {
      check(last.num_images() == 1 && last.text().empty(), "training example",
            "a Janus assistant image turn holds exactly one image and no text");
      for (size_t i = 0; i + 1 < ex.turns.size(); ++i)
        check(ex.turns[i].content.num_images() == 0, "training example",
              "Janus text-to-image takes no input image, and only the last turn can be an image");
      msgs.back().content = "";
      const auto ids32 = tok_.encode(render_deepseek(msgs, ex.system_prompt.value_or("")) + proc_.image_start_tag, true);
      p.image_target = true;
      p.ids.assign(ids32.begin(), ids32.end());
      return p;
    }
    for (size_t i = 1; i < ex.turns.size(); i += 2)
      check(ex.turns[i].content.num_images() == 0, "training example",
            "a Janus assistant image must be the last turn, alone");
    // Supervised spans: the tokens each assistant turn adds after its "<|Assistant|>:" prefix.
    auto encode = [&](size_t turns, bool with_last) {
      std::vector<Message> m(msgs.begin(), msgs.begin() + turns);
      if (!with_last) m.back().content = "";
      return expand_image_slots(tok_.encode(render_deepseek(m, ex.system_prompt.value_or(kDefaultSystemPrompt)), true), ids_.image,
                                ids_.image_start, ids_.image_end, proc_.num_image_tokens);
    };
    const auto ids = encode(msgs.size(), true);
    p.ids.assign(ids.begin(), ids.end());
    p.labels.assign(ids.size(), -100);
    for (size_t i = 1; i < msgs.size(); i += 2) {
      const auto before = encode(i + 1, false), after = encode(i + 1, true);
      check(std::equal(before.begin(), before.end(), after.begin()) && std::equal(after.begin(), after.end(), ids.begin()),
            "training example", "the tokenizer merges across the assistant prefix; cannot place the labels");
      for (size_t k = before.size(); k < after.size(); ++k) p.labels[k] = ids[k];
    }
    return p;
  }
  // VQ codes of one generated image: the processor's image size over the VQ encoder's stride.
  int64_t vq_codes_per_image() const {
    const int64_t side = proc_.image_size / model_->config().gen_vision.vq.downsample_factor();
    return side * side;
  }

  // Token embeddings of the prompt with the images' aligned SigLIP features in their placeholder
  // slots (prepare_inputs_embeds): images [1, n, 3, S, S].
  torch::Tensor embed(const torch::Tensor& input_ids, const std::vector<io::Image>& imgs, io::Trace* trace) {
    if (imgs.empty()) {
      auto e = model_->net()->language_model->model->embed(input_ids.to(device()));
      io::record(trace, "inputs_embeds", e);  // (prepare_inputs_embeds records its own)
      return e;
    }
    auto pixels = io::images_to_tensor(imgs, proc_.norm).unsqueeze(0);
    io::record(trace, "pixel_values", pixels);
    auto emb_mask = torch::ones({1, static_cast<int64_t>(imgs.size()), model_->image_tokens_per_image()}, torch::kBool);
    return model_->prepare_inputs_embeds(input_ids, pixels, input_ids.eq(ids_.image), emb_mask);
  }
  static text::Tokenizer load_tokenizer(const std::string& dir) {
    const std::string path = (fs::path(dir) / "tokenizer.json").string();
    if (!fs::is_regular_file(path)) throw Error(path, "no such file (Janus needs the model's tokenizer.json)");
    return text::Tokenizer::from_file(path);
  }
  std::string decode(const std::vector<int64_t>& t) const {
    return tok_.decode(std::vector<int32_t>(t.begin(), t.end()), true);
  }
  text::Tokenizer tok_;
  ProcessorConfig proc_;
  SpecialIds ids_;
  std::unique_ptr<JanusModel> model_;
  std::string path_;
};

}  // namespace

Family janus_family() {
  Family f;
  f.name = "janus";
  f.aliases = {"multi_modality", "janus_pro"};
  f.modes = {"understand", "generate"};
  f.read_image = [](const std::string& path) { return io::read_image(path); };  // PIL convert("RGB")
  f.load = [](const LoadOptions& lo) -> std::unique_ptr<Model> { return std::make_unique<Janus>(lo); };
  f.check = check_request;
  f.extra_flags = {{"--cfg_weight", "classifier-free guidance weight (Janus generate; default 5)", FlagSpec::Kind::Number},
                   {"--parallel_size", "images to generate in one batch (Janus generate; default 1)", FlagSpec::Kind::Int}};
  f.flags = [](const std::string& mode) -> std::vector<std::string> {
    if (mode == "generate") return {"--temperature", "--cfg_weight", "--parallel_size"};
    return {"--max_new_tokens", "--temperature", "--top_k", "--top_p"};
  };
  return f;
}

}  // namespace omni::models::janus
