#include "omni/models/bagel/config.h"

#include <cctype>
#include <filesystem>
#include <fstream>
#include <vector>

#include "omni/core/error.h"
#include "omni/core/strings.h"
#include "omni/io/hf_config.h"

namespace fs = std::filesystem;

namespace omni::bagel {

const char* variant_name(Variant v) { return v == Variant::ThinkMorph ? "thinkmorph" : "bagel"; }

namespace {
bool is_file(const fs::path& p) { return fs::is_regular_file(p); }

// The YAML front matter of a model card (between the leading "---" lines), or "".
std::string card_front_matter(const fs::path& readme) {
  std::ifstream in(readme);
  std::string line, out;
  if (!std::getline(in, line) || line.rfind("---", 0) != 0) return {};
  for (int n = 0; std::getline(in, line) && n < 200; ++n) {
    if (line.rfind("---", 0) == 0) return out;
    out += line + "\n";
  }
  return {};
}

// The weights file the official loaders read: BAGEL's app.py loads ema.safetensors; ThinkMorph's
// inferencer (and BAGEL's trainer's non-EMA dump) model.safetensors, possibly sharded. Each
// variant takes its own first and the other's when its own is absent.
std::string find_weights(const fs::path& d, Variant v) {
  std::vector<const char*> names = {"ema.safetensors", "model.safetensors", "model.safetensors.index.json"};
  if (v == Variant::ThinkMorph) names = {"model.safetensors", "model.safetensors.index.json", "ema.safetensors"};
  for (const char* n : names)
    if (is_file(d / n)) return (d / n).string();
  return {};
}
}  // namespace

nn::FluxVaeConfig vae_config_from(const std::string& file) {
  return nn::FluxVaeConfig::from_json(io::HfConfig::from_file(file).sub_or_empty("vae_params"));
}

Variant detect_variant(const std::string& dir) {
  const fs::path d(dir);
  if (is_file(d / "bagel_config.json")) {
    auto j = io::HfConfig::from_file((d / "bagel_config.json").string());
    const std::string t = j.get_or<std::string>("model_type", "");
    if (t == "thinkmorph") return Variant::ThinkMorph;
    if (t == "bagel") return Variant::Bagel;
    check(t.empty(), (d / "bagel_config.json").string(), "model_type must be \"bagel\" or \"thinkmorph\" (got \"" + t + "\")");
  }
  // ThinkMorph-7B's card says library_name: ThinkMorph-7B; BAGEL's says bagel-mot.
  if (is_file(d / "README.md") && ascii_lower(card_front_matter(d / "README.md")).find("thinkmorph") != std::string::npos)
    return Variant::ThinkMorph;
  return Variant::Bagel;
}

namespace {
ImageTransformParams transform_from(const io::HfConfig& j, ImageTransformParams p) {
  p.max_image_size = j.get_or<int>("max_image_size", p.max_image_size);
  p.min_image_size = j.get_or<int>("min_image_size", p.min_image_size);
  p.image_stride = j.get_or<int>("image_stride", p.image_stride);
  p.max_pixels = j.get_or<int64_t>("max_pixels", p.max_pixels);
  check(p.image_stride > 0 && p.min_image_size > 0 && p.max_image_size >= p.min_image_size, j.source(),
        "bad image transform sizes");
  return p;
}
}  // namespace

bool looks_like_bagel(const std::string& dir, Variant* variant) {
  const fs::path d(dir);
  if (!is_file(d / "llm_config.json") || !is_file(d / "vit_config.json") || find_weights(d, Variant::Bagel).empty())
    return false;
  if (variant) *variant = detect_variant(dir);
  return true;
}

BagelConfig BagelConfig::load(const std::string& dir) {
  const fs::path d(dir);
  if (!fs::is_directory(d)) throw Error(dir, "not a directory (expected a BAGEL / ThinkMorph checkpoint folder)");
  for (const char* f : {"llm_config.json", "vit_config.json", "ae.safetensors"})
    if (!is_file(d / f)) throw Error((d / f).string(), "no such file (a BAGEL checkpoint folder has it)");
  BagelConfig c;
  c.dir = dir;
  c.variant = detect_variant(dir);
  c.weights_file = find_weights(d, c.variant);
  if (c.weights_file.empty())
    throw Error(dir, "no weights: expected ema.safetensors or model.safetensors[.index.json]");

  c.llm = nn::Qwen2MoTConfig::from_hf(io::HfConfig::from_file((d / "llm_config.json").string()), /*qk_norm=*/true);
  const auto vit = nn::SiglipVisionConfig::from_file((d / "vit_config.json").string());
  c.vit = vit.with_layers_built(vit_inference_layers(vit.num_hidden_layers));

  const fs::path extra = d / "bagel_config.json";
  if (is_file(extra)) {
    auto j = io::HfConfig::from_file(extra.string());
    auto b = j.sub_or_empty("bagel_config");
    c.latent_patch_size = b.get_or<int64_t>("latent_patch_size", c.latent_patch_size);
    c.max_latent_size = b.get_or<int64_t>("max_latent_size", c.max_latent_size);
    c.vit_max_num_patch_per_side = b.get_or<int64_t>("vit_max_num_patch_per_side", c.vit_max_num_patch_per_side);
    c.connector_act = b.get_or<std::string>("connector_act", c.connector_act);
    c.interpolate_pos = b.get_or<bool>("interpolate_pos", c.interpolate_pos);
    c.timestep_shift = b.get_or<double>("timestep_shift", c.timestep_shift);
    c.vae = vae_config_from(extra.string());
    c.vae_transform = transform_from(j.sub_or_empty("vae_transform"), c.vae_transform);
    c.vit_transform = transform_from(j.sub_or_empty("vit_transform"), c.vit_transform);
    check(c.latent_patch_size > 0 && c.max_latent_size > 0 && c.vit_max_num_patch_per_side > 0, extra.string(),
          "bagel_config sizes must be positive");
  }
  nn::check_hf_activation(c.connector_act, "bagel_config.connector_act");
  c.vae.validate("BAGEL VAE params");
  c.vit.validate((d / "vit_config.json").string());
  return c;
}

}  // namespace omni::bagel
