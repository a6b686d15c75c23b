#include "omni/models/sensenova_u1/config.h"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <vector>

#include "omni/core/error.h"
#include "omni/io/hf_config.h"

namespace fs = std::filesystem;

namespace omni::sensenova_u1 {
namespace {

// NEOVisionConfig wraps llm_hidden_size and downsample_ratio into 1-tuples (the embedder reads
// [0]), so released files hold scalars and save_pretrained writes lists: accept both.
template <typename T>
T scalar_or_first(const io::HfConfig& c, const std::string& key, T fallback) {
  if (!c.has(key)) return fallback;
  const auto& j = c.json().at(key);
  try {
    if (j.is_array()) {
      if (j.size() != 1) throw Error(c.where(key), "expects a number or a one-element list (got " + j.dump() + ")");
      return j.at(0).get<T>();
    }
    return j.get<T>();
  } catch (const nlohmann::json::exception&) {
    throw Error(c.where(key), "has the wrong type (value " + j.dump() + ")");
  }
}

bool is_moe(const io::HfConfig& llm) {
  const auto type = llm.get_or<std::string>("model_type", "");
  std::string lower = type;
  std::transform(lower.begin(), lower.end(), lower.begin(), ::tolower);
  if (lower.find("moe") != std::string::npos) return true;
  if (llm.has("architectures"))
    for (const auto& a : llm.json().at("architectures"))
      if (a.is_string() && (a.get<std::string>().find("Moe") != std::string::npos ||
                            a.get<std::string>().find("MoE") != std::string::npos))
        return true;
  return llm.get_or<int64_t>("num_experts", 0) > 1;
}

OmniSettings read_omni_settings(const io::HfConfig& o, int64_t token_pixels) {
  OmniSettings s;
  if (o.has("image_pixels")) {
    const auto v = o.get<std::vector<int64_t>>("image_pixels");
    check(v.size() == 2 && v[0] > 0 && v[0] <= v[1], o.where("image_pixels"), "must be [min, max] with 0 < min <= max");
    check(v[1] >= token_pixels * token_pixels, o.where("image_pixels"),
          "max must hold at least one " + std::to_string(token_pixels) + "x" + std::to_string(token_pixels) + " token");
    s.image_pixels = std::make_pair(v[0], v[1]);
  }
  if (o.has("image_size")) {
    const auto v = o.get<std::vector<int>>("image_size");
    check(v.size() == 2 && v[0] >= token_pixels && v[1] >= token_pixels && v[0] % token_pixels == 0 &&
              v[1] % token_pixels == 0,
          o.where("image_size"), "must be [width, height], multiples of " + std::to_string(token_pixels));
    s.image_size = std::make_pair(v[0], v[1]);
  }
  if (o.has("system_message_for_gen")) s.system_message_for_gen = o.get<std::string>("system_message_for_gen");
  if (o.has("enable_thinking")) s.enable_thinking = o.get<bool>("enable_thinking");
  if (o.has("think_before_edit")) s.think_before_edit = o.get<bool>("think_before_edit");
  return s;
}

}  // namespace

int64_t VisionConfig::merge() const { return static_cast<int64_t>(1.0 / downsample_ratio); }
int64_t U1Config::merge() const { return static_cast<int64_t>(1.0 / downsample_ratio); }

double U1Config::noise_scale_for(int64_t tokens) const {
  double s = noise_scale;
  if (noise_scale_mode == "resolution" || noise_scale_mode == "dynamic" || noise_scale_mode == "dynamic_sqrt") {
    s = std::sqrt(static_cast<double>(tokens) / noise_scale_base_image_seq_len) * noise_scale;
    if (noise_scale_mode == "dynamic_sqrt") s = std::sqrt(s);
  }
  return std::min(s, noise_scale_max_value);
}

U1Config U1Config::from_file(const std::string& file) {
  const auto cfg = io::HfConfig::from_file(file);
  const auto type = cfg.get_or<std::string>("model_type", "");
  check(type.empty() || type == "neo_chat", cfg.where("model_type"), "expected \"neo_chat\" (got \"" + type + "\")");
  U1Config c;
  const auto llm = cfg.sub("llm_config");
  if (is_moe(llm))
    throw Error(cfg.where("llm_config"), "the Qwen3-MoE backbone (SenseNova-U1-A3B) is not supported yet; the dense 8B "
                                         "MoT checkpoints are");
  auto& l = c.llm;
  l.vocab_size = llm.get<int64_t>("vocab_size");
  l.hidden_size = llm.get<int64_t>("hidden_size");
  l.intermediate_size = llm.get<int64_t>("intermediate_size");
  l.num_hidden_layers = llm.get<int64_t>("num_hidden_layers");
  l.num_attention_heads = llm.get<int64_t>("num_attention_heads");
  l.num_key_value_heads = llm.get_or<int64_t>("num_key_value_heads", l.num_attention_heads);
  l.head_dim = llm.get_or<int64_t>("head_dim", l.hidden_size / l.num_attention_heads);
  l.rms_norm_eps = llm.get_or<double>("rms_norm_eps", 1e-6);
  l.rope_theta = llm.get_or<double>("rope_theta", 10000.0);
  l.rope_theta_hw = llm.get_or<double>("rope_theta_hw", 10000.0);
  l.max_position_embeddings = llm.get_or<int64_t>("max_position_embeddings", l.max_position_embeddings);
  l.attention_bias = llm.get_or<bool>("attention_bias", false);
  l.tie_word_embeddings = cfg.get_or<bool>("tie_word_embeddings", llm.get_or<bool>("tie_word_embeddings", false));
  check(llm.get_or<std::string>("hidden_act", "silu") == "silu", llm.where("hidden_act"), "only silu is supported");
  if (llm.has("rope_scaling") && !llm.json().at("rope_scaling").is_null())
    throw Error(llm.where("rope_scaling"), "RoPE scaling is not supported (the released checkpoints have none)");
  check(l.head_dim % 4 == 0, llm.where("head_dim"), "must be a multiple of 4 (t / h / w RoPE split)");
  check(l.num_key_value_heads > 0 && l.num_attention_heads % l.num_key_value_heads == 0,
        llm.where("num_key_value_heads"), "must divide num_attention_heads");

  const auto vis = cfg.sub("vision_config");
  auto& v = c.vision;
  v.hidden_size = vis.get<int64_t>("hidden_size");
  v.llm_hidden_size = scalar_or_first<int64_t>(vis, "llm_hidden_size", 2048);
  v.downsample_ratio = scalar_or_first<double>(vis, "downsample_ratio", 0.5);
  v.patch_size = vis.get_or<int64_t>("patch_size", 16);
  v.num_channels = vis.get_or<int64_t>("num_channels", 3);
  v.rope_theta_vision = vis.get_or<double>("rope_theta_vision", 10000.0);
  check(v.num_channels == 3, vis.where("num_channels"), "only RGB (3) is supported (4 is U1.5's RGBA line)");
  check(v.hidden_size % 4 == 0, vis.where("hidden_size"), "must be a multiple of 4 (2-D RoPE in pairs)");
  check(v.llm_hidden_size == l.hidden_size, vis.where("llm_hidden_size"),
        "must equal llm_config.hidden_size (" + std::to_string(l.hidden_size) + ")");

  c.downsample_ratio = cfg.get_or<double>("downsample_ratio", 0.5);
  check(c.downsample_ratio > 0 && c.downsample_ratio <= 1 && v.merge() == c.merge(), cfg.where("downsample_ratio"),
        "must be 1/k and equal vision_config.downsample_ratio");
  c.template_name = cfg.get_or<std::string>("template", "neo1_0");
  check(c.template_name == "neo1_0", cfg.where("template"), "only the neo1_0 chat template is supported");
  c.noise_scale = cfg.get_or<double>("noise_scale", 1.0);
  c.noise_scale_mode = cfg.get_or<std::string>("noise_scale_mode", "resolution");
  c.noise_scale_base_image_seq_len = cfg.get_or<double>("noise_scale_base_image_seq_len", 64);
  c.noise_scale_max_value = cfg.get_or<double>("noise_scale_max_value", 8.0);
  c.add_noise_scale_embedding = cfg.get_or<bool>("add_noise_scale_embedding", true);
  c.P_mean = cfg.get_or<double>("P_mean", 0.0);
  c.P_std = cfg.get_or<double>("P_std", 1.0);
  c.t_eps = cfg.get_or<double>("t_eps", 0.05);
  c.timestep_shift = cfg.get_or<double>("timestep_shift", 1.0);
  check(c.noise_scale_base_image_seq_len > 0, cfg.where("noise_scale_base_image_seq_len"), "must be positive");
  if (cfg.get_or<bool>("use_pixel_head", false))
    throw Error(cfg.where("use_pixel_head"), "the ConvDecoder pixel head (SenseNova-U1.5) is not supported; U1 uses the "
                                             "MLP head (use_pixel_head false)");
  const auto fm_layers = cfg.get_or<int64_t>("fm_head_layers", 2);
  check(fm_layers <= 2, cfg.where("fm_head_layers"), "the AdaLN flow head (fm_head_layers > 2) is not supported");
  check(cfg.get_or<int64_t>("concat_time_token_num", 0) == 0, cfg.where("concat_time_token_num"),
        "time tokens are not supported (the official t2i asserts 0)");
  c.omni = read_omni_settings(cfg.sub_or_empty("omni"), c.token_pixels());
  return c;
}

U1Config U1Config::from_dir(const std::string& dir) {
  const fs::path d(dir);
  const fs::path cfg = d / "config.json";
  if (!fs::is_regular_file(cfg)) throw Error(cfg.string(), "no such file (a SenseNova-U1 directory has config.json)");
  U1Config c = from_file(cfg.string());
  for (const char* n : {"model.safetensors", "model.safetensors.index.json"})
    if (fs::is_regular_file(d / n)) {
      c.weights = (d / n).string();
      break;
    }
  if (c.weights.empty()) throw Error(dir, "no model.safetensors or model.safetensors.index.json");
  return c;
}

}  // namespace omni::sensenova_u1
