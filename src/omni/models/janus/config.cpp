#include "omni/models/janus/config.h"

#include <map>

#include "omni/core/error.h"

namespace omni::models::janus {

const SiglipTableRow* find_siglip_row(const std::string& name) {
  // janus/models/siglip_vit.py SigLIP_MODEL_CONFIG.
  static const std::map<std::string, SiglipTableRow> table = {
      {"siglip_so400m_patch14_384", {336, 14, 1152, 27, 16, 3.7362, "map"}},
      {"siglip_so400m_patch14_224", {224, 14, 1152, 27, 16, 3.7362, "map"}},
      {"siglip_large_patch16_384", {384, 16, 1024, 24, 16, 4.0, "map"}},
  };
  auto it = table.find(name);
  return it == table.end() ? nullptr : &it->second;
}

namespace {

ProjectorConfig parse_projector(const io::HfConfig& sec) {
  check(sec.get<std::string>("cls").find("MlpProjector") != std::string::npos, sec.where("cls"),
        "only MlpProjector is supported");
  auto p = sec.sub("params");
  ProjectorConfig c;
  c.type = p.get<std::string>("projector_type");
  c.input_dim = p.get<int64_t>("input_dim");
  c.n_embed = p.get<int64_t>("n_embed");
  c.depth = p.get_or<int64_t>("depth", 1);
  check(c.type == "identity" || c.type == "linear" || c.type == "mlp_gelu", p.where("projector_type"),
        "unsupported \"" + c.type + "\" (a single vision encoder needs identity, linear or mlp_gelu)");
  return c;
}

VisionConfig parse_vision(const io::HfConfig& sec) {
  check(sec.get<std::string>("cls").find("CLIPVisionTower") != std::string::npos, sec.where("cls"),
        "only CLIPVisionTower is supported");
  auto p = sec.sub("params");
  VisionConfig v;
  v.model_name = p.get_or<std::string>("model_name", "siglip_large_patch16_384");
  check(v.model_name.rfind("siglip", 0) == 0, p.where("model_name"), "only SigLIP towers are supported");
  v.image_size = p.get_or<int64_t>("image_size", 336);
  v.select_layer = p.get_or<int64_t>("select_layer", -2);
  const SiglipTableRow* row = find_siglip_row(v.model_name);
  const bool explicit_sizes = p.has("width") && p.has("layers") && p.has("heads");
  if (!row && !explicit_sizes)
    throw Error(p.where("model_name"), "unknown SigLIP model \"" + v.model_name +
                                           "\" (known: siglip_so400m_patch14_384, siglip_so400m_patch14_224, "
                                           "siglip_large_patch16_384; or give width/layers/heads/patch_size under params)");
  int64_t patch = row ? row->patch_size : 16, width = row ? row->width : 0, layers = row ? row->layers : 0,
          heads = row ? row->heads : 0;
  double mlp_ratio = row ? row->mlp_ratio : 4.0;
  std::string pool = row ? row->global_pool : "map";
  patch = p.get_or<int64_t>("patch_size", patch);
  width = p.get_or<int64_t>("width", width);
  layers = p.get_or<int64_t>("layers", layers);
  heads = p.get_or<int64_t>("heads", heads);
  mlp_ratio = p.get_or<double>("mlp_ratio", mlp_ratio);
  pool = p.get_or<std::string>("global_pool", pool);
  check(pool == "map" || pool == "" || pool == "avg", p.where("global_pool"), "unsupported \"" + pool + "\"");
  v.global_pool = pool;
  v.table_layers = layers;
  v.mlp_ratio = mlp_ratio;
  if (p.has("pixel_mean") && p.has("pixel_std")) {
    auto m = p.get<std::vector<double>>("pixel_mean"), s = p.get<std::vector<double>>("pixel_std");
    check(m.size() == 3 && s.size() == 3, p.where("pixel_mean"), "expected 3 values");
    v.pixel_mean = std::array<double, 3>{m[0], m[1], m[2]};
    v.pixel_std = std::array<double, 3>{s[0], s[1], s[2]};
  }
  // create_siglip_vit: select_layer <= 0 keeps min(L, L + select_layer + 1) blocks.
  const int64_t depth =
      v.select_layer <= 0 ? std::min(layers, layers + v.select_layer + 1) : std::min(layers, v.select_layer);
  check(depth >= 1, p.where("select_layer"), "leaves no transformer block");
  check(v.image_size % patch == 0, p.where("image_size"), "must be a multiple of patch_size");
  nn::ViTConfig& c = v.vit;
  c.image_size = v.image_size;
  c.patch_size = patch;
  c.width = width;
  c.depth = depth;
  c.heads = heads;
  c.mlp_hidden = static_cast<int64_t>(static_cast<double>(width) * mlp_ratio);  // int(dim * mlp_ratio)
  c.qkv_bias = true;
  c.final_norm = pool != "avg";
  return v;
}

GenVisionConfig parse_gen_vision(const io::HfConfig& sec) {
  GenVisionConfig g;
  g.cls = sec.get<std::string>("cls");
  check(g.cls.find("VQ") != std::string::npos, sec.where("cls"), "expected a VQ model (VQ-16)");
  auto p = sec.sub("params");
  nn::VQConfig& vq = g.vq;  // defaults = VQ-16 (ModelArgs + Encoder/Decoder defaults)
  const bool known = g.cls == "VQ-16";
  const bool explicit_sizes = p.has("ch") || p.has("ch_mult") || p.has("z_channels");
  check(known || explicit_sizes, sec.where("cls"),
        "unknown VQ model \"" + g.cls + "\" (known: VQ-16; or give ch/ch_mult/z_channels under params)");
  vq.ch = p.get_or<int64_t>("ch", vq.ch);
  if (p.has("ch_mult")) vq.encoder_ch_mult = vq.decoder_ch_mult = p.get<std::vector<int64_t>>("ch_mult");
  vq.encoder_ch_mult = p.get_or<std::vector<int64_t>>("encoder_ch_mult", vq.encoder_ch_mult);
  vq.decoder_ch_mult = p.get_or<std::vector<int64_t>>("decoder_ch_mult", vq.decoder_ch_mult);
  vq.z_channels = p.get_or<int64_t>("z_channels", vq.z_channels);
  vq.codebook_size = p.get_or<int64_t>("codebook_size", vq.codebook_size);
  vq.codebook_embed_dim = p.get_or<int64_t>("codebook_embed_dim", vq.codebook_embed_dim);
  check(!vq.encoder_ch_mult.empty() && !vq.decoder_ch_mult.empty(), p.where("ch_mult"), "must not be empty");
  // gen_embed = Embedding(params.image_token_size, params.n_embed): required by the official code.
  g.image_token_size = p.get<int64_t>("image_token_size");
  g.n_embed = p.get<int64_t>("n_embed");
  return g;
}

GenHeadConfig parse_gen_head(const io::HfConfig& sec) {
  check(sec.get<std::string>("cls").find("vision_head") != std::string::npos, sec.where("cls"),
        "only vision_head is supported");
  auto p = sec.sub("params");
  GenHeadConfig h;
  h.n_embed = p.get<int64_t>("n_embed");
  h.image_token_embed = p.get<int64_t>("image_token_embed");
  h.image_token_size = p.get<int64_t>("image_token_size");
  return h;
}

}  // namespace

JanusConfig JanusConfig::from_hf(const io::HfConfig& cfg) {
  const auto mt = cfg.get_or<std::string>("model_type", "");
  check(mt == "multi_modality", cfg.where("model_type"), "expected \"multi_modality\" (Janus), got \"" + mt + "\"");
  JanusConfig c;
  c.source = cfg.source();
  c.language = nn::LlamaConfig::from_hf(cfg.sub("language_config"));
  c.vision = parse_vision(cfg.sub("vision_config"));
  c.aligner = parse_projector(cfg.sub("aligner_config"));
  c.gen_vision = parse_gen_vision(cfg.sub("gen_vision_config"));
  c.gen_aligner = parse_projector(cfg.sub("gen_aligner_config"));
  c.gen_head = parse_gen_head(cfg.sub("gen_head_config"));

  const int64_t D = c.language.hidden_size;
  auto need = [&](bool ok, const std::string& what, const std::string& why) { check(ok, c.source + ": " + what, why); };
  need(c.aligner.input_dim == c.vision.vit.width || c.aligner.type == "identity", "aligner_config.params.input_dim",
       "must equal the vision width " + std::to_string(c.vision.vit.width));
  need(c.aligner.n_embed == D || c.aligner.type == "identity", "aligner_config.params.n_embed",
       "must equal language hidden_size " + std::to_string(D));
  need(c.gen_aligner.input_dim == c.gen_vision.n_embed, "gen_aligner_config.params.input_dim",
       "must equal gen_vision n_embed " + std::to_string(c.gen_vision.n_embed));
  need(c.gen_aligner.n_embed == D, "gen_aligner_config.params.n_embed", "must equal language hidden_size");
  need(c.gen_head.n_embed == D, "gen_head_config.params.n_embed", "must equal language hidden_size");
  return c;
}

JanusConfig JanusConfig::from_file(const std::string& path) { return from_hf(io::HfConfig::from_file(path)); }

}  // namespace omni::models::janus
