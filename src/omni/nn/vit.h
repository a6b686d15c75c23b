// A timm-style pre-LN Vision Transformer as used by SigLIP in Janus (siglip_vit.VisionTransformer
// with class_token=False, no register tokens, no pre-norm, qkv with bias, exact-erf GELU,
// LayerNorm eps 1e-6). Module names mirror timm:
//   patch_embed.proj, pos_embed, blocks.N.{norm1, attn.{qkv, proj}, norm2, mlp.{fc1, fc2}}, norm
// The pooling head (attn_pool, fc_norm, head) is not built: Janus runs with ignore_head=True.
#pragma once
#include <torch/torch.h>

#include <vector>

namespace omni::nn {

struct ViTConfig {
  int64_t image_size = 384;
  int64_t patch_size = 16;
  int64_t in_chans = 3;
  int64_t width = 1024;
  int64_t depth = 24;  // blocks actually built
  int64_t heads = 16;
  int64_t mlp_hidden = 4096;
  bool qkv_bias = true;
  bool final_norm = true;  // timm: false when global_pool == "avg" (fc_norm is used instead)
  double ln_eps = 1e-6;
  int64_t grid() const { return image_size / patch_size; }
  int64_t num_patches() const { return grid() * grid(); }
};

class ViTAttentionImpl : public torch::nn::Module {
 public:
  ViTAttentionImpl(int64_t dim, int64_t heads, bool qkv_bias);
  torch::Tensor forward(const torch::Tensor& x);
  torch::nn::Linear qkv{nullptr}, proj{nullptr};
  int64_t heads, head_dim;
};
TORCH_MODULE(ViTAttention);

// timm Mlp: fc1 -> GELU (erf) -> fc2.
class ViTMlpImpl : public torch::nn::Module {
 public:
  ViTMlpImpl(int64_t dim, int64_t hidden);
  torch::Tensor forward(const torch::Tensor& x);
  torch::nn::Linear fc1{nullptr}, fc2{nullptr};
};
TORCH_MODULE(ViTMlp);

class ViTBlockImpl : public torch::nn::Module {
 public:
  explicit ViTBlockImpl(const ViTConfig& c);
  torch::Tensor forward(const torch::Tensor& x);
  torch::nn::LayerNorm norm1{nullptr}, norm2{nullptr};
  ViTAttention attn{nullptr};
  ViTMlp mlp{nullptr};
};
TORCH_MODULE(ViTBlock);

class PatchEmbedImpl : public torch::nn::Module {
 public:
  PatchEmbedImpl(int64_t in_chans, int64_t width, int64_t patch);
  torch::Tensor forward(const torch::Tensor& x);  // [B, C, H, W] -> [B, N, width]
  torch::nn::Conv2d proj{nullptr};
};
TORCH_MODULE(PatchEmbed);

class VisionTransformerImpl : public torch::nn::Module {
 public:
  explicit VisionTransformerImpl(const ViTConfig& c);
  // pixels [B, 3, H, W] (H = W = image_size) -> features [B, num_patches, width] after `norm`.
  torch::Tensor forward(const torch::Tensor& pixels);
  ViTConfig cfg;
  PatchEmbed patch_embed{nullptr};
  torch::Tensor pos_embed;  // [1, num_patches, width]
  torch::nn::ModuleList blocks;
  std::vector<ViTBlock> block_ptrs;
  torch::nn::LayerNorm norm{nullptr};
};
TORCH_MODULE(VisionTransformer);

// Janus/DeepSeek-VL MlpProjector: "identity", "linear" (one Linear registered as `layers`) or
// "mlp_gelu" (`layers.0` Linear, then depth-1 times GELU(erf) + Linear at layers.2, layers.4, ...).
class MlpProjectorImpl : public torch::nn::Module {
 public:
  MlpProjectorImpl(const std::string& type, int64_t input_dim, int64_t n_embed, int64_t depth);
  torch::Tensor forward(const torch::Tensor& x);
  std::string type;
  torch::nn::Linear linear{nullptr};      // "linear"
  std::vector<torch::nn::Linear> mlp;     // "mlp_gelu"
};
TORCH_MODULE(MlpProjector);

}  // namespace omni::nn
