#include "omni/models/bagel/config.h"

#include <filesystem>

#include "omni/core/error.h"
#include "omni/io/hf_config.h"

namespace fs = std::filesystem;

namespace omni::bagel {

const char* variant_name(Variant v) { return v == Variant::ThinkMorph ? "thinkmorph" : "bagel"; }

namespace {
bool is_file(const fs::path& p) { return fs::is_regular_file(p); }

// The weights file the official loaders read: BAGEL's app.py loads ema.safetensors; ThinkMorph's
// inferencer (and the trainer's non-EMA dump) model.safetensors, possibly sharded.
std::string find_weights(const fs::path& d, Variant* v) {
  if (is_file(d / "ema.safetensors")) {
    if (v) *v = Variant::Bagel;
    return (d / "ema.safetensors").string();
  }
  for (const char* name : {"model.safetensors", "model.safetensors.index.json"}) {
    if (is_file(d / name)) {
      if (v) *v = Variant::ThinkMorph;
      return (d / name).string();
    }
  }
  return {};
}

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
  return is_file(d / "llm_config.json") && is_file(d / "vit_config.json") && !find_weights(d, variant).empty();
}

BagelConfig BagelConfig::load(const std::string& dir) {
  const fs::path d(dir);
  if (!fs::is_directory(d)) throw Error(dir, "not a directory (expected a BAGEL / ThinkMorph checkpoint folder)");
  for (const char* f : {"llm_config.json", "vit_config.json", "ae.safetensors"})
    if (!is_file(d / f)) throw Error((d / f).string(), "no such file (a BAGEL checkpoint folder has it)");
  BagelConfig c;
  c.dir = dir;
  c.weights_file = find_weights(d, &c.variant);
  if (c.weights_file.empty())
    throw Error(dir, "no weights: expected ema.safetensors (BAGEL) or model.safetensors[.index.json] (ThinkMorph)");

  c.llm = nn::Qwen2MoTConfig::from_hf(io::HfConfig::from_file((d / "llm_config.json").string()), /*qk_norm=*/true);
  c.vit = nn::SiglipVisionConfig::from_file((d / "vit_config.json").string()).for_bagel_inference();

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
    c.vae = nn::FluxVaeConfig::from_bagel_config(extra.string());
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
