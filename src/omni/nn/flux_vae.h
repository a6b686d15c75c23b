// The FLUX autoencoder (KL-regularised conv VAE) that BAGEL uses for image generation
// (ByteDance-Seed/Bagel modeling/autoencoder.py: AutoEncoder, Encoder, Decoder, DiagonalGaussian).
// The building blocks are Janus' (omni/nn/vq.h: same ResnetBlock / AttnBlock / Downsample /
// Upsample math and tensor names); only the tree differs. Module names mirror ae.safetensors:
//   encoder.{conv_in, down.L.{block.N, downsample.conv}, mid.{block_1, attn_1, block_2}, norm_out, conv_out}
//   decoder.{conv_in, mid.{block_1, attn_1, block_2}, up.L.{block.N, upsample.conv}, norm_out, conv_out}
// (decoder.up is indexed by resolution level: up.0 is the full-resolution level, run last.)
#pragma once
#include <torch/torch.h>

#include <string>
#include <utility>
#include <vector>

#include "omni/io/hf_config.h"
#include "omni/nn/vq.h"

namespace omni::nn {

// AutoEncoderParams; the defaults are the real FLUX / BAGEL VAE (load_ae).
struct FluxVaeConfig {
  int64_t resolution = 256;
  int64_t in_channels = 3;
  int64_t downsample = 8;
  int64_t ch = 128;
  int64_t out_ch = 3;
  std::vector<int64_t> ch_mult{1, 2, 4, 4};
  int64_t num_res_blocks = 2;
  int64_t z_channels = 16;
  double scale_factor = 0.3611;
  double shift_factor = 0.1159;

  // Encoder spatial factor: 2^(levels-1) (8 for FLUX).
  int64_t downsample_factor() const { return int64_t{1} << (ch_mult.size() - 1); }
  // Throws omni::Error on inconsistent values (empty ch_mult, ch not a multiple of 32, ...).
  void validate(const std::string& source = "FluxVaeConfig") const;
  // An AutoEncoderParams-style object (keys as above); missing keys keep the defaults.
  static FluxVaeConfig from_json(const io::HfConfig& params);
};

// mid.{block_1, attn_1, block_2}
class FluxVaeMidImpl : public torch::nn::Module {
 public:
  explicit FluxVaeMidImpl(int64_t ch);
  torch::Tensor forward(const torch::Tensor& x);
  VQResnetBlock block_1{nullptr}, block_2{nullptr};
  VQAttnBlock attn_1{nullptr};
};
TORCH_MODULE(FluxVaeMid);

// One resolution level: block.N (+ downsample or upsample). FLUX has no attention per level
// (the official `attn` lists are empty), so none is registered.
class FluxVaeLevelImpl : public torch::nn::Module {
 public:
  torch::nn::ModuleList block;
  std::vector<VQResnetBlock> blocks;
  VQDownsample downsample{nullptr};
  VQUpsample upsample{nullptr};
};
TORCH_MODULE(FluxVaeLevel);

class FluxVaeEncoderImpl : public torch::nn::Module {
 public:
  explicit FluxVaeEncoderImpl(const FluxVaeConfig& c);
  torch::Tensor forward(const torch::Tensor& x);  // [B, in, H, W] -> moments [B, 2*z, H/f, W/f]
  torch::nn::Conv2d conv_in{nullptr}, conv_out{nullptr};
  torch::nn::ModuleList down;
  std::vector<FluxVaeLevel> levels;
  FluxVaeMid mid{nullptr};
  torch::nn::GroupNorm norm_out{nullptr};
};
TORCH_MODULE(FluxVaeEncoder);

class FluxVaeDecoderImpl : public torch::nn::Module {
 public:
  explicit FluxVaeDecoderImpl(const FluxVaeConfig& c);
  torch::Tensor forward(const torch::Tensor& z);  // [B, z, h, w] -> [B, out, h*f, w*f]
  torch::nn::Conv2d conv_in{nullptr}, conv_out{nullptr};
  FluxVaeMid mid{nullptr};
  torch::nn::ModuleList up;
  std::vector<FluxVaeLevel> levels;  // levels[L] == up.L
  torch::nn::GroupNorm norm_out{nullptr};
};
TORCH_MODULE(FluxVaeDecoder);

class FluxAutoEncoderImpl : public torch::nn::Module {
 public:
  explicit FluxAutoEncoderImpl(const FluxVaeConfig& c = {});

  // encoder(x) split along channels: (mean, logvar), each [B, z, h, w].
  std::pair<torch::Tensor, torch::Tensor> encode_moments(const torch::Tensor& x);
  // AutoEncoder.encode: z = mean + exp(0.5 * logvar) * eps, then scale * (z - shift).
  // eps (same shape as mean) is injected; when undefined it is drawn from `gen` (then required).
  torch::Tensor encode(const torch::Tensor& x, const torch::Tensor& eps = {}, at::Generator* gen = nullptr);
  // Same without sampling: scale * (mean - shift).
  torch::Tensor encode_mean(const torch::Tensor& x);
  // The posterior step alone, for callers that already have the moments.
  torch::Tensor sample_latent(const torch::Tensor& mean, const torch::Tensor& logvar, const torch::Tensor& eps = {},
                              at::Generator* gen = nullptr) const;
  // AutoEncoder.decode: decoder(z / scale + shift).
  torch::Tensor decode(const torch::Tensor& z);

  // Builds the model and loads `path` (file or directory) strictly into it, as float32.
  static std::shared_ptr<FluxAutoEncoderImpl> load(const std::string& path, const FluxVaeConfig& c = {});

  FluxVaeConfig cfg;
  FluxVaeEncoder encoder{nullptr};
  FluxVaeDecoder decoder{nullptr};
};
TORCH_MODULE(FluxAutoEncoder);

}  // namespace omni::nn
