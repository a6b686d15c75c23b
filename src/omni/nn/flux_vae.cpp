#include "omni/nn/flux_vae.h"

#include <cmath>

#include "omni/core/error.h"
#include "omni/io/checkpoint_torch.h"
#include "omni/io/module_loader_torch.h"

namespace omni::nn {

namespace {
torch::nn::Conv2d conv3(int64_t in, int64_t out) {
  return torch::nn::Conv2d(torch::nn::Conv2dOptions(in, out, 3).stride(1).padding(1));
}

std::string shape_str(const torch::Tensor& t) {
  std::string s = "[";
  for (int64_t i = 0; i < t.dim(); ++i) s += (i ? ", " : "") + std::to_string(t.size(i));
  return s + "]";
}
}  // namespace

// ---------------------------------------------------------------------------------------------
void FluxVaeConfig::validate(const std::string& source) const {
  check(!ch_mult.empty(), source + ": ch_mult", "must not be empty");
  check(ch > 0 && ch % 32 == 0, source + ": ch", "must be a positive multiple of 32 (GroupNorm(32)), got " + std::to_string(ch));
  for (auto m : ch_mult) check(m > 0, source + ": ch_mult", "entries must be positive");
  check(num_res_blocks > 0, source + ": num_res_blocks", "must be positive");
  check(in_channels > 0 && out_ch > 0 && z_channels > 0, source, "in_channels, out_ch and z_channels must be positive");
  check(scale_factor != 0.0 && std::isfinite(scale_factor), source + ": scale_factor", "must be finite and non-zero");
  check(std::isfinite(shift_factor), source + ": shift_factor", "must be finite");
  check(downsample == downsample_factor(), source + ": downsample",
        "is " + std::to_string(downsample) + " but ch_mult has " + std::to_string(ch_mult.size()) + " levels (factor " +
            std::to_string(downsample_factor()) + ")");
}

FluxVaeConfig FluxVaeConfig::from_json(const io::HfConfig& p) {
  FluxVaeConfig c;
  c.resolution = p.get_or<int64_t>("resolution", c.resolution);
  c.in_channels = p.get_or<int64_t>("in_channels", c.in_channels);
  c.ch = p.get_or<int64_t>("ch", c.ch);
  c.out_ch = p.get_or<int64_t>("out_ch", c.out_ch);
  c.ch_mult = p.get_or<std::vector<int64_t>>("ch_mult", c.ch_mult);
  c.num_res_blocks = p.get_or<int64_t>("num_res_blocks", c.num_res_blocks);
  c.z_channels = p.get_or<int64_t>("z_channels", c.z_channels);
  c.scale_factor = p.get_or<double>("scale_factor", c.scale_factor);
  c.shift_factor = p.get_or<double>("shift_factor", c.shift_factor);
  c.downsample = p.get_or<int64_t>("downsample", c.downsample_factor());
  c.validate(p.source());
  return c;
}

// ---------------------------------------------------------------------------------------------
FluxVaeMidImpl::FluxVaeMidImpl(int64_t ch) {
  block_1 = register_module("block_1", VQResnetBlock(ch, ch));
  attn_1 = register_module("attn_1", VQAttnBlock(ch));
  block_2 = register_module("block_2", VQResnetBlock(ch, ch));
}

torch::Tensor FluxVaeMidImpl::forward(const torch::Tensor& x) {
  return block_2->forward(attn_1->forward(block_1->forward(x)));
}

// ---------------------------------------------------------------------------------------------
FluxVaeEncoderImpl::FluxVaeEncoderImpl(const FluxVaeConfig& c) {
  const size_t L = c.ch_mult.size();
  conv_in = register_module("conv_in", conv3(c.in_channels, c.ch));
  down = register_module("down", torch::nn::ModuleList());
  int64_t block_in = c.ch;
  for (size_t lvl = 0; lvl < L; ++lvl) {
    FluxVaeLevel level;
    level->block = level->register_module("block", torch::nn::ModuleList());
    block_in = c.ch * (lvl == 0 ? 1 : c.ch_mult[lvl - 1]);  // in_ch_mult = (1,) + ch_mult
    const int64_t block_out = c.ch * c.ch_mult[lvl];
    for (int64_t i = 0; i < c.num_res_blocks; ++i) {
      VQResnetBlock b(block_in, block_out);
      level->block->push_back(b);
      level->blocks.push_back(b);
      block_in = block_out;
    }
    if (lvl != L - 1) level->downsample = level->register_module("downsample", VQDownsample(block_in));
    down->push_back(level);
    levels.push_back(level);
  }
  mid = register_module("mid", FluxVaeMid(block_in));
  norm_out = register_module("norm_out", vq_group_norm(block_in));
  conv_out = register_module("conv_out", conv3(block_in, 2 * c.z_channels));
}

torch::Tensor FluxVaeEncoderImpl::forward(const torch::Tensor& x) {
  auto h = conv_in->forward(x);
  for (auto& level : levels) {
    for (auto& b : level->blocks) h = b->forward(h);
    if (level->downsample) h = level->downsample->forward(h);
  }
  h = mid->forward(h);
  return conv_out->forward(swish(norm_out->forward(h)));
}

// ---------------------------------------------------------------------------------------------
FluxVaeDecoderImpl::FluxVaeDecoderImpl(const FluxVaeConfig& c) {
  const size_t L = c.ch_mult.size();
  int64_t block_in = c.ch * c.ch_mult[L - 1];
  conv_in = register_module("conv_in", conv3(c.z_channels, block_in));
  mid = register_module("mid", FluxVaeMid(block_in));
  // The official code builds the levels from the lowest resolution up (channel counts flow that
  // way) and inserts each at the front, so up.L is level L.
  levels.resize(L);
  for (size_t r = 0; r < L; ++r) {
    const size_t lvl = L - 1 - r;
    FluxVaeLevel level;
    level->block = level->register_module("block", torch::nn::ModuleList());
    const int64_t block_out = c.ch * c.ch_mult[lvl];
    for (int64_t i = 0; i < c.num_res_blocks + 1; ++i) {
      VQResnetBlock b(block_in, block_out);
      level->block->push_back(b);
      level->blocks.push_back(b);
      block_in = block_out;
    }
    if (lvl != 0) level->upsample = level->register_module("upsample", VQUpsample(block_in, /*bf16_cast=*/false));
    levels[lvl] = level;
  }
  up = register_module("up", torch::nn::ModuleList());
  for (auto& level : levels) up->push_back(level);
  norm_out = register_module("norm_out", vq_group_norm(block_in));
  conv_out = register_module("conv_out", conv3(block_in, c.out_ch));
}

torch::Tensor FluxVaeDecoderImpl::forward(const torch::Tensor& z) {
  auto h = mid->forward(conv_in->forward(z));
  for (size_t r = 0; r < levels.size(); ++r) {
    auto& level = levels[levels.size() - 1 - r];
    for (auto& b : level->blocks) h = b->forward(h);
    if (level->upsample) h = level->upsample->forward(h);
  }
  return conv_out->forward(swish(norm_out->forward(h)));
}

// ---------------------------------------------------------------------------------------------
FluxAutoEncoderImpl::FluxAutoEncoderImpl(const FluxVaeConfig& c) : cfg(c) {
  cfg.validate();
  encoder = register_module("encoder", FluxVaeEncoder(cfg));
  decoder = register_module("decoder", FluxVaeDecoder(cfg));
}

std::pair<torch::Tensor, torch::Tensor> FluxAutoEncoderImpl::encode_moments(const torch::Tensor& x) {
  check(x.dim() == 4 && x.size(1) == cfg.in_channels, "FluxAutoEncoder.encode input",
        "expected [B, " + std::to_string(cfg.in_channels) + ", H, W], got " + shape_str(x));
  const int64_t f = cfg.downsample_factor();
  check(x.size(2) % f == 0 && x.size(3) % f == 0, "FluxAutoEncoder.encode input",
        "H and W must be multiples of " + std::to_string(f) + ", got " + shape_str(x));
  auto moments = encoder->forward(x);
  auto parts = moments.chunk(2, 1);  // DiagonalGaussian(chunk_dim=1)
  return {parts[0], parts[1]};
}

torch::Tensor FluxAutoEncoderImpl::sample_latent(const torch::Tensor& mean, const torch::Tensor& logvar,
                                                 const torch::Tensor& eps, at::Generator* gen) const {
  check(eps.defined() || gen != nullptr, "FluxAutoEncoder.encode", "sampling the posterior needs eps or a generator");
  torch::Tensor noise = eps.defined() ? eps : torch::randn(mean.sizes(), *gen, mean.options());
  check(noise.sizes() == mean.sizes(), "FluxAutoEncoder.encode eps",
        "expected shape " + shape_str(mean) + ", got " + shape_str(noise));
  auto z = mean + torch::exp(0.5 * logvar) * noise.to(mean.options());
  return cfg.scale_factor * (z - cfg.shift_factor);
}

torch::Tensor FluxAutoEncoderImpl::encode(const torch::Tensor& x, const torch::Tensor& eps, at::Generator* gen) {
  auto [mean, logvar] = encode_moments(x);
  return sample_latent(mean, logvar, eps, gen);
}

torch::Tensor FluxAutoEncoderImpl::encode_mean(const torch::Tensor& x) {
  auto mean = encode_moments(x).first;
  return cfg.scale_factor * (mean - cfg.shift_factor);
}

torch::Tensor FluxAutoEncoderImpl::decode(const torch::Tensor& z) {
  check(z.dim() == 4 && z.size(1) == cfg.z_channels, "FluxAutoEncoder.decode input",
        "expected [B, " + std::to_string(cfg.z_channels) + ", h, w], got " + shape_str(z));
  return decoder->forward(z / cfg.scale_factor + cfg.shift_factor);
}

std::shared_ptr<FluxAutoEncoderImpl> FluxAutoEncoderImpl::load(const std::string& path, const FluxVaeConfig& c) {
  auto m = std::make_shared<FluxAutoEncoderImpl>(c);
  io::load_module(*m, io::Checkpoint::open(path));
  m->eval();
  return m;
}

}  // namespace omni::nn
