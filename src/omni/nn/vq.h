// The LlamaGen-style VQ tokenizer used by Janus (janus/models/vq_model.py): conv encoder/decoder
// with GroupNorm(32, eps 1e-6) + swish ResNet blocks, single-head attention at the lowest
// resolution, and an L2-normalised codebook. Module names mirror the official state_dict:
//   encoder.{conv_in, conv_blocks.L.{res.N, attn.N, downsample.conv}, mid.{0,1,2}, norm_out, conv_out}
//   decoder.{conv_in, mid.{0,1,2}, conv_blocks.L.{res.N, attn.N, upsample.conv}, norm_out, conv_out}
//   quantize.{embedding.weight, codebook_used}, quant_conv, post_quant_conv
#pragma once
#include <torch/torch.h>

#include <vector>

namespace omni::nn {

torch::Tensor swish(const torch::Tensor& x);  // x * sigmoid(x)
torch::nn::GroupNorm vq_group_norm(int64_t channels);  // 32 groups, eps 1e-6, affine

class VQResnetBlockImpl : public torch::nn::Module {
 public:
  VQResnetBlockImpl(int64_t in, int64_t out);
  torch::Tensor forward(const torch::Tensor& x);
  int64_t in_ch, out_ch;
  torch::nn::GroupNorm norm1{nullptr}, norm2{nullptr};
  torch::nn::Conv2d conv1{nullptr}, conv2{nullptr}, nin_shortcut{nullptr};  // nin_shortcut iff in != out
};
TORCH_MODULE(VQResnetBlock);

class VQAttnBlockImpl : public torch::nn::Module {
 public:
  explicit VQAttnBlockImpl(int64_t ch);
  torch::Tensor forward(const torch::Tensor& x);
  torch::nn::GroupNorm norm{nullptr};
  torch::nn::Conv2d q{nullptr}, k{nullptr}, v{nullptr}, proj_out{nullptr};
};
TORCH_MODULE(VQAttnBlock);

// pad (0,1,0,1) with zeros, then 3x3 stride-2 conv.
class VQDownsampleImpl : public torch::nn::Module {
 public:
  explicit VQDownsampleImpl(int64_t ch);
  torch::Tensor forward(const torch::Tensor& x);
  torch::nn::Conv2d conv{nullptr};
};
TORCH_MODULE(VQDownsample);

// nearest x2, then 3x3 conv. With bf16_cast (Janus' official code) non-float32 inputs are
// interpolated in float32 and cast to bf16; without it (FLUX) the input dtype is kept.
class VQUpsampleImpl : public torch::nn::Module {
 public:
  explicit VQUpsampleImpl(int64_t ch, bool bf16_cast = true);
  torch::Tensor forward(const torch::Tensor& x);
  torch::nn::Conv2d conv{nullptr};
  bool bf16_cast = true;
};
TORCH_MODULE(VQUpsample);

// One resolution level: res.N, attn.N (lowest resolution only), downsample or upsample.
class VQConvBlockImpl : public torch::nn::Module {
 public:
  torch::nn::ModuleList res, attn;
  std::vector<VQResnetBlock> res_ptrs;
  std::vector<VQAttnBlock> attn_ptrs;
  VQDownsample downsample{nullptr};
  VQUpsample upsample{nullptr};
};
TORCH_MODULE(VQConvBlock);

struct VQConfig {
  int64_t in_channels = 3;
  int64_t ch = 128;
  std::vector<int64_t> encoder_ch_mult{1, 1, 2, 2, 4};
  std::vector<int64_t> decoder_ch_mult{1, 1, 2, 2, 4};
  int64_t num_res_blocks = 2;
  int64_t z_channels = 256;
  int64_t codebook_size = 16384;
  int64_t codebook_embed_dim = 8;
  bool codebook_l2_norm = true;
  bool codebook_show_usage = true;  // registers quantize.codebook_used [65536]
  // Spatial downsampling factor of the encoder: 2^(levels-1).
  int64_t downsample_factor() const { return int64_t{1} << (encoder_ch_mult.size() - 1); }
};

class VQEncoderImpl : public torch::nn::Module {
 public:
  explicit VQEncoderImpl(const VQConfig& c);
  torch::Tensor forward(const torch::Tensor& x);
  torch::nn::Conv2d conv_in{nullptr}, conv_out{nullptr};
  torch::nn::ModuleList conv_blocks, mid;
  std::vector<VQConvBlock> block_ptrs;
  VQResnetBlock mid0{nullptr}, mid2{nullptr};
  VQAttnBlock mid1{nullptr};
  torch::nn::GroupNorm norm_out{nullptr};
};
TORCH_MODULE(VQEncoder);

class VQDecoderImpl : public torch::nn::Module {
 public:
  explicit VQDecoderImpl(const VQConfig& c);
  torch::Tensor forward(const torch::Tensor& z);
  torch::nn::Conv2d conv_in{nullptr}, conv_out{nullptr};
  torch::nn::ModuleList conv_blocks, mid;
  std::vector<VQConvBlock> block_ptrs;
  VQResnetBlock mid0{nullptr}, mid2{nullptr};
  VQAttnBlock mid1{nullptr};
  torch::nn::GroupNorm norm_out{nullptr};
};
TORCH_MODULE(VQDecoder);

class VectorQuantizerImpl : public torch::nn::Module {
 public:
  VectorQuantizerImpl(int64_t n_e, int64_t e_dim, bool l2_norm, bool show_usage);
  torch::Tensor codebook() const;  // L2-normalised rows when l2_norm (F.normalize, eps 1e-12)
  struct Result {
    torch::Tensor quant;    // [B, C, h, w] = z + (z_q - z), z normalised, as the official forward
    torch::Tensor indices;  // int64 [B*h*w], raster order per image
  };
  Result forward(const torch::Tensor& z);  // z [B, C, h, w]
  // codes (any integer dtype) [B, h*w] or [B*h*w] -> [B, C, h, w] (shape = {B, C, h, w}).
  torch::Tensor codebook_entry(const torch::Tensor& codes, const std::vector<int64_t>& shape) const;
  torch::nn::Embedding embedding{nullptr};
  torch::Tensor codebook_used;
  bool l2_norm;
};
TORCH_MODULE(VectorQuantizer);

class VQModelImpl : public torch::nn::Module {
 public:
  explicit VQModelImpl(const VQConfig& c);
  struct Encoded {
    torch::Tensor h_prequant;  // quant_conv(encoder(x)) [B, C, h, w]
    torch::Tensor quant;       // [B, C, h, w]
    torch::Tensor codes;       // int64 [B*h*w]
  };
  Encoded encode(const torch::Tensor& x);
  torch::Tensor decode(const torch::Tensor& quant);  // post_quant_conv + decoder
  torch::Tensor decode_code(const torch::Tensor& codes, const std::vector<int64_t>& shape);
  VQConfig cfg;
  VQEncoder encoder{nullptr};
  VQDecoder decoder{nullptr};
  VectorQuantizer quantize{nullptr};
  torch::nn::Conv2d quant_conv{nullptr}, post_quant_conv{nullptr};
};
TORCH_MODULE(VQModel);

// F.normalize(x, p=2, dim): x / max(||x||, eps).
torch::Tensor l2_normalize(const torch::Tensor& x, int64_t dim, double eps = 1e-12);

}  // namespace omni::nn
