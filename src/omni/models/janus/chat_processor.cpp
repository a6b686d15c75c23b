#include "omni/models/janus/chat_processor.h"

#include <algorithm>
#include <cmath>
#include <filesystem>

#include "omni/core/error.h"
#include "omni/io/hf_config.h"
#include "omni/io/resize.h"
#include "omni/text/tokenizer.h"

namespace omni::models::janus {

const char* const kDefaultSystemPrompt =
    "You are a helpful language and vision assistant. You are able to understand the visual content that the "
    "user provides, and assist the user with a variety of tasks using natural language.";

namespace {
const char* const kBos = "<\xEF\xBD\x9C" "begin\xE2\x96\x81of\xE2\x96\x81sentence\xEF\xBD\x9C>";
const char* const kEos = "<\xEF\xBD\x9C" "end\xE2\x96\x81of\xE2\x96\x81sentence\xEF\xBD\x9C>";

std::string strip(const std::string& s) {
  const char* ws = " \t\n\r\f\v";
  const auto b = s.find_first_not_of(ws);
  if (b == std::string::npos) return "";
  return s.substr(b, s.find_last_not_of(ws) - b + 1);
}

template <size_t N>
std::array<double, N> read_array(const io::HfConfig& c, const std::string& key, std::array<double, N> fallback) {
  if (!c.has(key)) return fallback;
  auto v = c.get<std::vector<double>>(key);
  if (v.size() != N) throw Error(c.where(key), "expected " + std::to_string(N) + " values");
  std::array<double, N> out{};  // filled below; {} quiets GCC 12's maybe-uninitialized
  std::copy(v.begin(), v.end(), out.begin());
  return out;
}
}  // namespace

ProcessorConfig ProcessorConfig::load(const std::string& dir) {
  namespace fs = std::filesystem;
  ProcessorConfig cfg;
  const fs::path pre = fs::path(dir) / "preprocessor_config.json";
  if (fs::is_regular_file(pre)) {
    auto c = io::HfConfig::from_file(pre.string());
    cfg.image_size = c.get_or<int>("image_size", cfg.image_size);
    cfg.min_size = c.get_or<int>("min_size", cfg.min_size);
    cfg.norm.rescale_factor = c.get_or<double>("rescale_factor", cfg.norm.rescale_factor);
    cfg.norm.do_normalize = c.get_or<bool>("do_normalize", cfg.norm.do_normalize);
    cfg.norm.mean = read_array<3>(c, "image_mean", cfg.norm.mean);
    cfg.norm.std = read_array<3>(c, "image_std", cfg.norm.std);
    // VLMImageProcessor ignores background_color and uses int(255 * image_mean).
    for (int i = 0; i < 3; ++i) cfg.background[i] = static_cast<uint8_t>(static_cast<int>(255 * cfg.norm.mean[i]));
    if (cfg.image_size <= 0) throw Error(c.where("image_size"), "must be positive");
  }
  const fs::path proc = fs::path(dir) / "processor_config.json";
  if (fs::is_regular_file(proc)) {
    auto c = io::HfConfig::from_file(proc.string());
    cfg.image_tag = c.get_or<std::string>("image_tag", cfg.image_tag);
    cfg.num_image_tokens = c.get_or<int>("num_image_tokens", cfg.num_image_tokens);
    cfg.add_special_token = c.get_or<bool>("add_special_token", cfg.add_special_token);
    const auto fmt = c.get_or<std::string>("sft_format", "deepseek");
    if (fmt != "deepseek") throw Error(c.where("sft_format"), "'" + fmt + "' is not supported (expected deepseek)");
  }
  return cfg;
}

std::string render_deepseek(const std::vector<Message>& turns, const std::string& system_prompt) {
  std::string out = system_prompt.empty() ? "" : system_prompt + "\n\n";
  for (size_t i = 0; i < turns.size(); ++i) {
    const std::string content = strip(turns[i].content);
    if (content.empty()) {
      out += turns[i].role + ":";
    } else {
      out += turns[i].role + ": " + content + (i % 2 == 0 ? "\n\n" : kEos);
    }
  }
  return strip(out);
}

std::string user_content(const generate::InterleavedInput& in, const std::string& image_tag) {
  std::string s;
  for (const auto& c : in.chunks) s += c.is_image() ? image_tag + (in.placed_by_markers ? "" : "\n") : c.text;
  return s;
}

std::vector<int32_t> expand_image_slots(const std::vector<int32_t>& ids, int32_t image_id, int32_t begin_id,
                                        int32_t end_id, int n) {
  std::vector<int32_t> out;
  out.reserve(ids.size() + 600);
  for (int32_t id : ids) {
    if (id != image_id) {
      out.push_back(id);
      continue;
    }
    out.push_back(begin_id);
    out.insert(out.end(), static_cast<size_t>(n), image_id);
    out.push_back(end_id);
  }
  return out;
}

io::Image preprocess_image(const io::Image& img, const ProcessorConfig& cfg) {
  if (img.width <= 0 || img.height <= 0) throw Error("image", "is empty");
  const double m = std::max(img.width, img.height);
  // int() truncates, as in the official code.
  const int h = std::max(static_cast<int>(img.height / m * cfg.image_size), cfg.min_size);
  const int w = std::max(static_cast<int>(img.width / m * cfg.image_size), cfg.min_size);
  io::Image resized = io::resize(img, w, h, io::Resample::Bicubic);
  return io::expand_to_square(resized, cfg.background[0], cfg.background[1], cfg.background[2]);
}

SpecialIds SpecialIds::lookup(const text::Tokenizer& tok, const ProcessorConfig& cfg) {
  SpecialIds s{};
  s.image = tok.require_token_id(cfg.image_tag);
  s.image_start = tok.require_token_id(cfg.image_start_tag);
  s.image_end = tok.require_token_id(cfg.image_end_tag);
  s.pad = tok.require_token_id(cfg.pad_tag);
  s.bos = tok.require_token_id(kBos);
  s.eos = tok.require_token_id(kEos);
  return s;
}

}  // namespace omni::models::janus
