#include "omni/nn/vq.h"

#include <algorithm>

#include "omni/core/error.h"
#include "omni/nn/attention.h"

namespace omni::nn {

namespace {
torch::nn::Conv2d conv(int64_t in, int64_t out, int64_t k, int64_t stride = 1, int64_t pad = -1) {
  if (pad < 0) pad = k / 2;
  return torch::nn::Conv2d(torch::nn::Conv2dOptions(in, out, k).stride(stride).padding(pad));
}
}  // namespace

torch::Tensor swish(const torch::Tensor& x) { return x * torch::sigmoid(x); }

namespace {
// No autograd graph is recorded through x: an op may overwrite a fresh tensor x.
bool may_overwrite(const torch::Tensor& x) { return c10::InferenceMode::is_enabled() || !x.requires_grad(); }

// swish of a fresh tensor (a norm's output): in place where no graph is recorded, the same values
// without the product's new tensor.
torch::Tensor swish_fresh(torch::Tensor x) { return may_overwrite(x) ? x.mul_(torch::sigmoid(x)) : swish(x); }
}  // namespace

torch::nn::GroupNorm vq_group_norm(int64_t channels) {
  return torch::nn::GroupNorm(torch::nn::GroupNormOptions(32, channels).eps(1e-6).affine(true));
}

torch::Tensor l2_normalize(const torch::Tensor& x, int64_t dim, double eps) {
  auto denom = x.norm(2, {dim}, /*keepdim=*/true).clamp_min(eps).expand_as(x);
  return x / denom;
}

// ---------------------------------------------------------------------------------------------
VQResnetBlockImpl::VQResnetBlockImpl(int64_t in, int64_t out) : in_ch(in), out_ch(out) {
  norm1 = register_module("norm1", vq_group_norm(in));
  conv1 = register_module("conv1", conv(in, out, 3));
  norm2 = register_module("norm2", vq_group_norm(out));
  conv2 = register_module("conv2", conv(out, out, 3));
  if (in != out) nin_shortcut = register_module("nin_shortcut", conv(in, out, 1));
}

// At the top level of a decoder these are the largest tensors of a run (Janus's VQ at 384^2: 75 MB
// each, 128 channels): the swish and the residual sum overwrite fresh tensors where no graph is
// recorded, so a block holds two fewer of them (x + h and h + x are the same sums).
torch::Tensor VQResnetBlockImpl::forward(const torch::Tensor& x) {
  auto h = swish_fresh(norm1->forward(x));
  h = conv1->forward(h);  // one statement each: a tensor is released as soon as the next exists
  h = swish_fresh(norm2->forward(h));
  h = conv2->forward(h);
  const auto& skip = nin_shortcut ? nin_shortcut->forward(x) : x;
  return may_overwrite(h) ? h.add_(skip) : skip + h;
}

VQAttnBlockImpl::VQAttnBlockImpl(int64_t ch) {
  norm = register_module("norm", vq_group_norm(ch));
  q = register_module("q", conv(ch, ch, 1));
  k = register_module("k", conv(ch, ch, 1));
  v = register_module("v", conv(ch, ch, 1));
  proj_out = register_module("proj_out", conv(ch, ch, 1));
}

torch::Tensor VQAttnBlockImpl::forward(const torch::Tensor& x) {
  auto h_ = norm->forward(x);
  auto q_ = q->forward(h_), k_ = k->forward(h_), v_ = v->forward(h_);
  const int64_t b = q_.size(0), c = q_.size(1), h = q_.size(2), w = q_.size(3), n = h * w;
  // One head over the hw positions: [b, 1, hw, c] (nn::attention chunks the queries, so a 1024^2
  // FLUX decode, hw = 16384 at its mid block, never builds its 1 GiB score matrix).
  auto tokens = [&](const torch::Tensor& t) { return t.reshape({b, 1, c, n}).transpose(2, 3); };
  AttentionOptions ao;
  ao.scale = std::pow(static_cast<double>(c), -0.5);
  auto out = attention(tokens(q_), tokens(k_), tokens(v_), ao).transpose(2, 3);  // b, 1, c, hw
  return x + proj_out->forward(out.reshape({b, c, h, w}));
}

VQDownsampleImpl::VQDownsampleImpl(int64_t ch) { conv = register_module("conv", ::omni::nn::conv(ch, ch, 3, 2, 0)); }

torch::Tensor VQDownsampleImpl::forward(const torch::Tensor& x) {
  return conv->forward(torch::constant_pad_nd(x, {0, 1, 0, 1}, 0));
}

VQUpsampleImpl::VQUpsampleImpl(int64_t ch, bool bf16) : bf16_cast(bf16) { conv = register_module("conv", ::omni::nn::conv(ch, ch, 3)); }

torch::Tensor VQUpsampleImpl::forward(const torch::Tensor& x) {
  namespace F = torch::nn::functional;
  auto opts = F::InterpolateFuncOptions().scale_factor(std::vector<double>{2.0, 2.0}).mode(torch::kNearest);
  torch::Tensor y;
  if (bf16_cast && x.scalar_type() != torch::kFloat32)
    y = F::interpolate(x.to(torch::kFloat32), opts).to(torch::kBFloat16);  // sic: official casts to bf16
  else
    y = F::interpolate(x, opts);
  return conv->forward(y);
}

// ---------------------------------------------------------------------------------------------
VQEncoderImpl::VQEncoderImpl(const VQConfig& c) {
  const auto& mult = c.encoder_ch_mult;
  const size_t L = mult.size();
  conv_in = register_module("conv_in", conv(c.in_channels, c.ch, 3));
  conv_blocks = register_module("conv_blocks", torch::nn::ModuleList());
  int64_t block_in = c.ch;
  for (size_t lvl = 0; lvl < L; ++lvl) {
    VQConvBlock blk;
    blk->res = blk->register_module("res", torch::nn::ModuleList());
    blk->attn = blk->register_module("attn", torch::nn::ModuleList());
    block_in = c.ch * (lvl == 0 ? 1 : mult[lvl - 1]);
    const int64_t block_out = c.ch * mult[lvl];
    for (int64_t i = 0; i < c.num_res_blocks; ++i) {
      VQResnetBlock r(block_in, block_out);
      blk->res->push_back(r);
      blk->res_ptrs.push_back(r);
      block_in = block_out;
      if (lvl == L - 1) {
        VQAttnBlock a(block_in);
        blk->attn->push_back(a);
        blk->attn_ptrs.push_back(a);
      }
    }
    if (lvl != L - 1) blk->downsample = blk->register_module("downsample", VQDownsample(block_in));
    conv_blocks->push_back(blk);
    block_ptrs.push_back(blk);
  }
  mid = register_module("mid", torch::nn::ModuleList());
  mid0 = VQResnetBlock(block_in, block_in);
  mid1 = VQAttnBlock(block_in);
  mid2 = VQResnetBlock(block_in, block_in);
  mid->push_back(mid0);
  mid->push_back(mid1);
  mid->push_back(mid2);
  norm_out = register_module("norm_out", vq_group_norm(block_in));
  conv_out = register_module("conv_out", conv(block_in, c.z_channels, 3));
}

torch::Tensor VQEncoderImpl::forward(const torch::Tensor& x) {
  auto h = conv_in->forward(x);
  for (size_t lvl = 0; lvl < block_ptrs.size(); ++lvl) {
    auto& blk = block_ptrs[lvl];
    for (size_t i = 0; i < blk->res_ptrs.size(); ++i) {
      h = blk->res_ptrs[i]->forward(h);
      if (!blk->attn_ptrs.empty()) h = blk->attn_ptrs[i]->forward(h);
    }
    if (blk->downsample) h = blk->downsample->forward(h);
  }
  h = mid2->forward(mid1->forward(mid0->forward(h)));
  return conv_out->forward(swish_fresh(norm_out->forward(h)));
}

VQDecoderImpl::VQDecoderImpl(const VQConfig& c) {
  const auto& mult = c.decoder_ch_mult;
  const size_t L = mult.size();
  int64_t block_in = c.ch * mult[L - 1];
  conv_in = register_module("conv_in", conv(c.z_channels, block_in, 3));
  mid = register_module("mid", torch::nn::ModuleList());
  mid0 = VQResnetBlock(block_in, block_in);
  mid1 = VQAttnBlock(block_in);
  mid2 = VQResnetBlock(block_in, block_in);
  mid->push_back(mid0);
  mid->push_back(mid1);
  mid->push_back(mid2);
  conv_blocks = register_module("conv_blocks", torch::nn::ModuleList());
  for (size_t r = 0; r < L; ++r) {
    const size_t lvl = L - 1 - r;  // reversed(range(L))
    VQConvBlock blk;
    blk->res = blk->register_module("res", torch::nn::ModuleList());
    blk->attn = blk->register_module("attn", torch::nn::ModuleList());
    const int64_t block_out = c.ch * mult[lvl];
    for (int64_t i = 0; i < c.num_res_blocks + 1; ++i) {
      VQResnetBlock rb(block_in, block_out);
      blk->res->push_back(rb);
      blk->res_ptrs.push_back(rb);
      block_in = block_out;
      if (lvl == L - 1) {
        VQAttnBlock a(block_in);
        blk->attn->push_back(a);
        blk->attn_ptrs.push_back(a);
      }
    }
    if (lvl != 0) blk->upsample = blk->register_module("upsample", VQUpsample(block_in));
    conv_blocks->push_back(blk);
    block_ptrs.push_back(blk);
  }
  norm_out = register_module("norm_out", vq_group_norm(block_in));
  conv_out = register_module("conv_out", conv(block_in, 3, 3));
}

torch::Tensor VQDecoderImpl::forward(const torch::Tensor& z) {
  auto h = conv_in->forward(z);
  h = mid2->forward(mid1->forward(mid0->forward(h)));
  for (auto& blk : block_ptrs) {
    for (size_t i = 0; i < blk->res_ptrs.size(); ++i) {
      h = blk->res_ptrs[i]->forward(h);
      if (!blk->attn_ptrs.empty()) h = blk->attn_ptrs[i]->forward(h);
    }
    if (blk->upsample) h = blk->upsample->forward(h);
  }
  return conv_out->forward(swish_fresh(norm_out->forward(h)));
}

// ---------------------------------------------------------------------------------------------
VectorQuantizerImpl::VectorQuantizerImpl(int64_t n_e, int64_t e_dim, bool l2, bool show_usage) : l2_norm(l2) {
  embedding = register_module("embedding", torch::nn::Embedding(n_e, e_dim));
  if (show_usage) codebook_used = register_buffer("codebook_used", torch::zeros({65536}));
}

torch::Tensor VectorQuantizerImpl::codebook() const {
  return l2_norm ? l2_normalize(embedding->weight, -1) : embedding->weight;
}

VectorQuantizerImpl::Result VectorQuantizerImpl::forward(const torch::Tensor& z_in) {
  const int64_t e_dim = embedding->weight.size(1);
  auto z = z_in.permute({0, 2, 3, 1}).contiguous();  // b h w c
  auto zf = z.view({-1, e_dim});
  auto emb = embedding->weight;
  if (l2_norm) {
    z = l2_normalize(z, -1);
    zf = l2_normalize(zf, -1);
    emb = l2_normalize(emb, -1);
  }
  auto d = zf.pow(2).sum(1, /*keepdim=*/true) + emb.pow(2).sum(1) - 2 * torch::matmul(zf, emb.t());
  auto idx = torch::argmin(d, 1);
  auto zq = emb.index_select(0, idx).view(z.sizes());
  auto quant = z + (zq - z);  // the straight-through form of the official forward
  return {quant.permute({0, 3, 1, 2}), idx};
}

torch::Tensor VectorQuantizerImpl::codebook_entry(const torch::Tensor& codes, const std::vector<int64_t>& shape) const {
  check(shape.size() == 4, "decode_code shape", "expected [B, C, h, w]");
  auto zq = codebook().index_select(0, codes.reshape({-1}).to(torch::kInt64));  // (b*h*w, c)
  return zq.reshape({shape[0], shape[2], shape[3], shape[1]}).permute({0, 3, 1, 2}).contiguous();
}

VQModelImpl::VQModelImpl(const VQConfig& c) : cfg(c) {
  encoder = register_module("encoder", VQEncoder(c));
  decoder = register_module("decoder", VQDecoder(c));
  quantize = register_module("quantize",
                             VectorQuantizer(c.codebook_size, c.codebook_embed_dim, c.codebook_l2_norm, c.codebook_show_usage));
  quant_conv = register_module("quant_conv", conv(c.z_channels, c.codebook_embed_dim, 1));
  post_quant_conv = register_module("post_quant_conv", conv(c.codebook_embed_dim, c.z_channels, 1));
}

VQModelImpl::Encoded VQModelImpl::encode(const torch::Tensor& x) {
  Encoded e;
  e.h_prequant = quant_conv->forward(encoder->forward(x));
  auto r = quantize->forward(e.h_prequant);
  e.quant = r.quant;
  e.codes = r.indices;
  return e;
}

torch::Tensor VQModelImpl::decode(const torch::Tensor& quant) { return decoder->forward(post_quant_conv->forward(quant)); }

torch::Tensor VQModelImpl::decode_code(const torch::Tensor& codes, const std::vector<int64_t>& shape) {
  return decode(quantize->codebook_entry(codes, shape));
}

}  // namespace omni::nn
