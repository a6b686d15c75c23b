#include "omni/models/janus/pipeline.h"

#include <cstdio>
#include <filesystem>

#include "omni/core/error.h"
#include "omni/core/log.h"
#include "omni/core/progress.h"
#include "omni/io/image.h"
#include "omni/io/image_tensor.h"
#include "omni/io/trace_torch.h"
#include "omni/models/janus/chat_processor.h"
#include "omni/models/janus/model.h"
#include "omni/text/tokenizer.h"

namespace fs = std::filesystem;

namespace omni::models::janus {
namespace {

struct Loaded {
  std::unique_ptr<JanusModel> model;
  text::Tokenizer tok;
  ProcessorConfig proc;
  SpecialIds ids;
};

Loaded load_all(const std::string& dir) {
  StageTimer t("load model");
  const std::string tok_path = (fs::path(dir) / "tokenizer.json").string();
  if (!fs::is_regular_file(tok_path)) throw Error(tok_path, "no such file (Janus needs the model's tokenizer.json)");
  auto tok = text::Tokenizer::from_file(tok_path);
  auto proc = ProcessorConfig::load(dir);
  auto ids = SpecialIds::lookup(tok, proc);
  auto model = JanusModel::load(dir);
  return Loaded{std::move(model), std::move(tok), std::move(proc), ids};
}

torch::Tensor to_tensor(const std::vector<int32_t>& ids) {
  return torch::tensor(std::vector<int64_t>(ids.begin(), ids.end()), torch::kInt64).unsqueeze(0);
}

}  // namespace

std::string numbered_output(const std::string& path, int index) {
  if (index == 0) return path;
  fs::path p(path);
  return (p.parent_path() / (p.stem().string() + "_" + std::to_string(index) + p.extension().string())).string();
}

int run_understand(const InferOptions& o) {
  c10::InferenceMode guard;
  // Check the user's inputs before the (slow) model load: markers vs images, readable images.
  const ProcessorConfig proc = ProcessorConfig::load(o.model_path);
  const std::string content = user_content(o.prompt, o.images.size(), proc.image_tag);
  std::vector<io::Image> imgs;
  for (const auto& path : o.images) imgs.push_back(preprocess_image(io::read_image(path), proc));

  Loaded L = load_all(o.model_path);
  io::Trace trace(o.trace);
  L.model->set_trace(&trace);

  // Prompt: the deepseek SFT format with the official system prompt.
  const std::string prompt = render_deepseek({{"<|User|>", content}, {"<|Assistant|>", ""}}, kDefaultSystemPrompt);
  auto ids = expand_image_slots(L.tok.encode(prompt, true), L.ids.image, L.ids.image_start, L.ids.image_end,
                                L.proc.num_image_tokens);
  torch::Tensor input_ids = to_tensor(ids);
  trace.record("input_ids", input_ids);

  // Images: [1, n, 3, S, S]; their features go into the placeholder slots.
  torch::Tensor inputs_embeds;
  if (imgs.empty()) {
    inputs_embeds = L.model->net()->language_model->model->embed(input_ids);
    trace.record("inputs_embeds", inputs_embeds);  // (prepare_inputs_embeds records its own)
  } else {
    auto pixels = io::images_to_tensor(imgs, L.proc.norm).unsqueeze(0);
    trace.record("pixel_values", pixels);
    auto seq_mask = input_ids.eq(L.ids.image);
    auto emb_mask = torch::ones({1, static_cast<int64_t>(imgs.size()), L.model->image_tokens_per_image()}, torch::kBool);
    inputs_embeds = L.model->prepare_inputs_embeds(input_ids, pixels, seq_mask, emb_mask);
  }

  TextGenOptions g;
  g.max_new_tokens = o.max_new_tokens;
  g.eos_token_ids = {L.ids.eos};
  g.temperature = o.temperature.value_or(0.0);
  g.top_p = o.top_p.value_or(1.0);
  if (o.seed) g.seed = static_cast<uint64_t>(*o.seed);
  // Stream: print the newly completed text after each token (held back while a UTF-8 sequence
  // is still incomplete, i.e. the decoded text ends in U+FFFD).
  std::vector<int32_t> generated;
  std::string printed;
  g.on_token = [&](int64_t token) {
    generated.push_back(static_cast<int32_t>(token));
    std::string text = L.tok.decode(generated, true);
    const bool partial = text.size() >= 3 && text.compare(text.size() - 3, 3, "\xEF\xBF\xBD") == 0;
    if (!partial && text.size() > printed.size() && text.compare(0, printed.size(), printed) == 0) {
      std::fwrite(text.data() + printed.size(), 1, text.size() - printed.size(), stdout);
      std::fflush(stdout);
      printed = text;
    }
    return true;
  };
  auto res = L.model->understand(inputs_embeds, g);
  std::string final_text = L.tok.decode(generated, true);
  if (final_text.size() > printed.size() && final_text.compare(0, printed.size(), printed) == 0)
    std::fwrite(final_text.data() + printed.size(), 1, final_text.size() - printed.size(), stdout);
  std::fputc('\n', stdout);
  std::fflush(stdout);

  // logits_last (the last prefill position) is recorded by the model.
  trace.record("generated_ids", torch::tensor(res.tokens, torch::kInt64).reshape({1, -1}));
  trace.save();
  const double n = static_cast<double>(res.tokens.size());
  log_info("prompt ", res.prompt_tokens, " tokens in ", res.prefill_seconds, " s; generated ", res.tokens.size(),
           " tokens in ", res.decode_seconds, " s (", res.decode_seconds > 0 ? n / res.decode_seconds : 0.0,
           " tokens/s, stop: ", res.stop_reason, "); peak RSS ", format_bytes(peak_rss_bytes()));
  return 0;
}

int run_generate(const InferOptions& o) {
  if (o.output.empty()) throw Error("--output", "required for --mode generate (the PNG to write)");
  if (!o.images.empty()) throw Error("--image", "Janus text-to-image takes no input image");
  if (o.parallel_size < 1) throw Error("--parallel_size", "must be at least 1");
  if (!fs::is_directory(fs::path(o.output).parent_path().empty() ? "." : fs::path(o.output).parent_path()))
    throw Error(o.output, "the output directory does not exist");
  c10::InferenceMode guard;
  Loaded L = load_all(o.model_path);
  io::Trace trace(o.trace);
  L.model->set_trace(&trace);  // records generated_tokens and decoded

  const std::string prompt =
      render_deepseek({{"<|User|>", o.prompt}, {"<|Assistant|>", ""}}, "") + L.proc.image_start_tag;
  auto ids32 = L.tok.encode(prompt, true);
  std::vector<int64_t> ids(ids32.begin(), ids32.end());

  ImageGenOptions g;
  g.parallel_size = o.parallel_size;
  g.cfg_weight = o.cfg_weight.value_or(5.0);
  g.temperature = o.temperature.value_or(1.0);
  g.image_size = L.proc.image_size;
  if (o.seed) g.seed = static_cast<uint64_t>(*o.seed);
  if (trace.enabled())
    g.on_step = [&](int64_t step, const torch::Tensor& raw, const torch::Tensor&) {
      if (step == 0) trace.record("raw_logits_first", raw);
    };
  auto res = L.model->generate_image_tokens(ids, L.ids.pad, g);
  trace.record("cfg_input_tokens", res.cfg_input_tokens);

  torch::Tensor decoded;
  {
    StageTimer t("VQ decode");
    decoded = L.model->decode_image_tokens(res.tokens, res.grid);
  }
  auto u8 = JanusModel::to_uint8_images(decoded).contiguous();  // [P, H, W, 3]
  for (int64_t i = 0; i < u8.size(0); ++i) {
    io::Image img;
    img.height = static_cast<int>(u8.size(1));
    img.width = static_cast<int>(u8.size(2));
    auto row = u8[i].contiguous();
    img.rgb.assign(row.data_ptr<uint8_t>(), row.data_ptr<uint8_t>() + row.numel());
    const std::string path = numbered_output(o.output, static_cast<int>(i));
    io::write_png(path, img);
    std::printf("%s\n", path.c_str());
  }
  trace.save();
  log_info("generated ", u8.size(0), " image(s) of ", res.tokens.size(1), " tokens in ", res.seconds,
           " s; peak RSS ", format_bytes(peak_rss_bytes()));
  return 0;
}

void register_janus() {
  ModelEntry e;
  e.model_type = "janus";
  e.aliases = {"multi_modality", "janus_pro"};
  e.modes = {"understand", "generate"};
  e.infer = [](const InferOptions& o) { return o.mode == "generate" ? run_generate(o) : run_understand(o); };
  register_model(std::move(e));
}

}  // namespace omni::models::janus
