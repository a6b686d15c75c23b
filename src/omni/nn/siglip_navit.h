// BAGEL's SigLIP NaViT vision encoder (ByteDance-Seed/Bagel modeling/bagel/siglip_navit.py) as
// BAGEL runs it: vit_config.rope = False (a learned absolute position embedding, no 2-D RoPE),
// the patch-embedding Conv2d already converted to a Linear (convert_conv2d_to_linear), no pooling
// head, and a packed ("NaViT") batch: the patches of several images of different sizes are
// concatenated along one token axis and attention is full (non-causal) within each image only
// (flash_attn_varlen_func with cu_seqlens). Module names mirror the checkpoint under
// `vit_model.`:
//   vision_model.embeddings.{patch_embedding, position_embedding}
//   vision_model.encoder.layers.N.{self_attn.{q,k,v,out}_proj, layer_norm1, mlp.{fc1, fc2}, layer_norm2}
//   vision_model.post_layernorm
// Inputs are float32 (the official code casts q/k/v to bf16 for flash-attn; this is the float32
// evaluation of the same formulas, as the golden fixtures are).
#pragma once
#include <torch/torch.h>

#include <string>
#include <vector>

#include "omni/io/hf_config.h"

namespace omni::nn {

// Hugging Face ACT2FN subset: "gelu_pytorch_tanh", "gelu_new", "gelu_fast" (tanh GELU), "gelu"
// (exact erf), "quick_gelu" (x * sigmoid(1.702 x)), "silu"/"swish", "relu".
bool is_hf_activation(const std::string& name);
// Throws omni::Error(where, ...) for an unsupported name.
void check_hf_activation(const std::string& name, const std::string& where);
torch::Tensor hf_activation(const std::string& name, const torch::Tensor& x);

// vit_config.json (SiglipVisionConfig). Defaults are the class defaults of the official
// SiglipVisionConfig; BAGEL's released vit_config.json sets hidden 1152, intermediate 4304,
// 16 heads, 27 layers, patch 14, image_size 980.
struct SiglipVisionConfig {
  int64_t hidden_size = 768;
  int64_t intermediate_size = 3072;
  int64_t num_hidden_layers = 12;  // the json value
  int64_t num_attention_heads = 12;
  int64_t num_channels = 3;
  int64_t image_size = 224;
  int64_t patch_size = 16;
  std::string hidden_act = "gelu_pytorch_tanh";
  double layer_norm_eps = 1e-6;
  // Encoder layers actually instantiated (and expected in the checkpoint). from_hf sets it to
  // num_hidden_layers; a model's loader may build fewer (with_layers_built; BAGEL's rule lives in
  // models/bagel/config.h).
  int64_t layers_built = 12;

  int64_t head_dim() const { return hidden_size / num_attention_heads; }
  int64_t num_patches_per_side() const { return image_size / patch_size; }
  int64_t num_positions() const { return num_patches_per_side() * num_patches_per_side(); }
  int64_t patch_dim() const { return num_channels * patch_size * patch_size; }  // Linear input, 588 for p=14

  SiglipVisionConfig with_layers_built(int64_t n) const {
    SiglipVisionConfig c = *this;
    c.layers_built = n;
    return c;
  }

  // Throws omni::Error on inconsistent values (hidden not divisible by heads, layers_built < 0, ...).
  void validate(const std::string& source = "SiglipVisionConfig") const;
  // Missing keys keep the defaults above; layers_built = num_hidden_layers. A "rope": true in the
  // json is ignored: BAGEL's loaders always force rope = False and only that variant is built.
  static SiglipVisionConfig from_hf(const io::HfConfig& cfg);
  static SiglipVisionConfig from_file(const std::string& vit_config_json);
};

// Segment lengths from a cu_seqlens tensor ([num_images + 1], starts at 0, nondecreasing; any
// integer dtype, any device). Throws omni::Error when malformed.
std::vector<int64_t> seqlens_from_cu(const torch::Tensor& cu_seqlens);
// The official cu_seqlens = pad(cumsum(seqlens), (1, 0)) as int64 [n + 1].
torch::Tensor cu_seqlens_from_lengths(const std::vector<int64_t>& seqlens);

// Full (non-causal) softmax attention confined to consecutive segments of the token axis
// (flash_attn_varlen_func with cu_seqlens_q = cu_seqlens_k, causal=False).
// q, k, v: [N, H, d] (same H; no GQA); seqlens sum to N; scale defaults to 1/sqrt(d).
// Returns [N, H, d]: nn::attention over each segment (softmax in float32; large segments in
// query chunks so the score block stays below max_score_bytes).
torch::Tensor varlen_full_attention(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v,
                                    const std::vector<int64_t>& seqlens, double scale = -1,
                                    int64_t max_score_bytes = int64_t{256} << 20);

// embeddings: patch_embedding (Linear [hidden, 3p^2], input order (row, col, channel)) +
// position_embedding (Embedding [num_positions, hidden]) indexed by the flattened position ids.
class SiglipVisionEmbeddingsImpl : public torch::nn::Module {
 public:
  explicit SiglipVisionEmbeddingsImpl(const SiglipVisionConfig& c);
  // packed_pixel_values [N, 3p^2], packed_flattened_position_ids int64 [N] -> [N, hidden]
  torch::Tensor forward(const torch::Tensor& packed_pixel_values, const torch::Tensor& packed_flattened_position_ids);
  torch::nn::Linear patch_embedding{nullptr};
  torch::nn::Embedding position_embedding{nullptr};
};
TORCH_MODULE(SiglipVisionEmbeddings);

// self_attn.{q,k,v,out}_proj (all with bias), varlen full attention, scale head_dim^-0.5.
class SiglipAttentionImpl : public torch::nn::Module {
 public:
  explicit SiglipAttentionImpl(const SiglipVisionConfig& c);
  torch::Tensor forward(const torch::Tensor& x, const std::vector<int64_t>& seqlens);  // [N, hidden]
  torch::nn::Linear q_proj{nullptr}, k_proj{nullptr}, v_proj{nullptr}, out_proj{nullptr};
  int64_t heads, head_dim;
};
TORCH_MODULE(SiglipAttention);

// mlp: fc2(act(fc1(x))), act = hidden_act (gelu_pytorch_tanh).
class SiglipMLPImpl : public torch::nn::Module {
 public:
  explicit SiglipMLPImpl(const SiglipVisionConfig& c);
  torch::Tensor forward(const torch::Tensor& x);
  torch::nn::Linear fc1{nullptr}, fc2{nullptr};
  std::string act;
};
TORCH_MODULE(SiglipMLP);

// Pre-LN block: x + attn(ln1(x)); then h + mlp(ln2(h)).
class SiglipEncoderLayerImpl : public torch::nn::Module {
 public:
  explicit SiglipEncoderLayerImpl(const SiglipVisionConfig& c);
  torch::Tensor forward(const torch::Tensor& x, const std::vector<int64_t>& seqlens);
  SiglipAttention self_attn{nullptr};
  torch::nn::LayerNorm layer_norm1{nullptr}, layer_norm2{nullptr};
  SiglipMLP mlp{nullptr};
};
TORCH_MODULE(SiglipEncoderLayer);

class SiglipEncoderImpl : public torch::nn::Module {
 public:
  explicit SiglipEncoderImpl(const SiglipVisionConfig& c);  // c.layers_built layers
  torch::Tensor forward(const torch::Tensor& x, const std::vector<int64_t>& seqlens);
  torch::nn::ModuleList layers;
  std::vector<SiglipEncoderLayer> layer_ptrs;
};
TORCH_MODULE(SiglipEncoder);

// vision_model: embeddings -> encoder -> post_layernorm.
class SiglipVisionTransformerImpl : public torch::nn::Module {
 public:
  explicit SiglipVisionTransformerImpl(const SiglipVisionConfig& c);
  torch::Tensor forward(const torch::Tensor& packed_pixel_values, const torch::Tensor& packed_flattened_position_ids,
                        const std::vector<int64_t>& seqlens);
  SiglipVisionConfig cfg;
  SiglipVisionEmbeddings embeddings{nullptr};
  SiglipEncoder encoder{nullptr};
  torch::nn::LayerNorm post_layernorm{nullptr};
};
TORCH_MODULE(SiglipVisionTransformer);

// The top-level SiglipVisionModel (child `vision_model`); load it with prefix "vit_model." from
// BAGEL's ema.safetensors.
class SiglipVisionModelImpl : public torch::nn::Module {
 public:
  explicit SiglipVisionModelImpl(const SiglipVisionConfig& c);
  // packed_pixel_values [N, 3p^2] float (patchify order), packed_flattened_position_ids int64 [N]
  // (values < num_positions), cu_seqlens [num_images + 1] (any integer dtype) -> [N, hidden]
  // after post_layernorm.
  torch::Tensor forward(const torch::Tensor& packed_pixel_values, const torch::Tensor& packed_flattened_position_ids,
                        const torch::Tensor& cu_seqlens);
  // The same with per-image token counts (sum = N).
  torch::Tensor forward_seqlens(const torch::Tensor& packed_pixel_values,
                                const torch::Tensor& packed_flattened_position_ids,
                                const std::vector<int64_t>& seqlens);
  const SiglipVisionConfig& config() const { return vision_model->cfg; }
  SiglipVisionTransformer vision_model{nullptr};
};
TORCH_MODULE(SiglipVisionModel);

}  // namespace omni::nn
