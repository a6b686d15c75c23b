#include "omni/nn/siglip_navit.h"

#include <cmath>

#include "omni/core/error.h"
#include "omni/nn/attention.h"
#include "omni/nn/elementwise_cpu.h"
#include "omni/nn/fp32_math.h"
#include "omni/nn/layer_norm.h"
#include "omni/nn/linear.h"

namespace omni::nn {

bool is_hf_activation(const std::string& n) {
  return n == "gelu_pytorch_tanh" || n == "gelu_new" || n == "gelu_fast" || n == "gelu" || n == "quick_gelu" ||
         n == "silu" || n == "swish" || n == "relu";
}

void check_hf_activation(const std::string& name, const std::string& where) {
  check(is_hf_activation(name), where,
        "unsupported activation \"" + name +
            "\" (gelu_pytorch_tanh, gelu_new, gelu_fast, gelu, quick_gelu, silu, swish, relu)");
}

torch::Tensor hf_activation(const std::string& n, const torch::Tensor& x) {
  // bf16 / fp16 on the CPU through fp32, rounded once (fp32_math.h; fp32 and bf16 inference in
  // one pass, elementwise_cpu.h)
  if (n == "gelu_pytorch_tanh" || n == "gelu_new" || n == "gelu_fast") {
    torch::Tensor fused;
    if (gelu_tanh(x, fused)) return fused;
    return in_fp32_on_cpu(x, [](const torch::Tensor& t) { return torch::gelu(t, "tanh"); });
  }
  if (n == "gelu") return torch::gelu(x);
  if (n == "quick_gelu") return x * torch::sigmoid(1.702 * x);
  if (n == "silu" || n == "swish") return in_fp32_on_cpu(x, [](const torch::Tensor& t) { return torch::silu(t); });
  if (n == "relu") return torch::relu(x);
  check_hf_activation(n, "activation");
  return x;  // unreachable
}

// ---- config ----

void SiglipVisionConfig::validate(const std::string& source) const {
  check(hidden_size > 0 && num_attention_heads > 0 && hidden_size % num_attention_heads == 0, source,
        "hidden_size (" + std::to_string(hidden_size) + ") must be a positive multiple of num_attention_heads (" +
            std::to_string(num_attention_heads) + ")");
  check(intermediate_size > 0, source, "intermediate_size must be > 0");
  check(patch_size > 0 && image_size >= patch_size, source, "patch_size must be > 0 and <= image_size");
  check(num_channels > 0, source, "num_channels must be > 0");
  check(layers_built >= 0, source, "layers built must be >= 0 (got " + std::to_string(layers_built) + ")");
  check(layer_norm_eps > 0, source, "layer_norm_eps must be > 0");
  check_hf_activation(hidden_act, source + ": hidden_act");
}

SiglipVisionConfig SiglipVisionConfig::from_hf(const io::HfConfig& j) {
  SiglipVisionConfig c;
  c.hidden_size = j.get_or<int64_t>("hidden_size", c.hidden_size);
  c.intermediate_size = j.get_or<int64_t>("intermediate_size", c.intermediate_size);
  c.num_hidden_layers = j.get_or<int64_t>("num_hidden_layers", c.num_hidden_layers);
  c.num_attention_heads = j.get_or<int64_t>("num_attention_heads", c.num_attention_heads);
  c.num_channels = j.get_or<int64_t>("num_channels", c.num_channels);
  c.image_size = j.get_or<int64_t>("image_size", c.image_size);
  c.patch_size = j.get_or<int64_t>("patch_size", c.patch_size);
  c.hidden_act = j.get_or<std::string>("hidden_act", c.hidden_act);
  c.layer_norm_eps = j.get_or<double>("layer_norm_eps", c.layer_norm_eps);
  c.layers_built = c.num_hidden_layers;
  c.validate(j.source());
  return c;
}

SiglipVisionConfig SiglipVisionConfig::from_file(const std::string& path) {
  return from_hf(io::HfConfig::from_file(path));
}

// ---- varlen attention ----

std::vector<int64_t> seqlens_from_cu(const torch::Tensor& cu) {
  check(cu.defined() && cu.dim() == 1 && cu.numel() >= 1, "cu_seqlens", "expects a 1-D tensor [num_images + 1]");
  check(!cu.is_floating_point() && !cu.is_complex(), "cu_seqlens", "must be an integer tensor");
  auto c = cu.to(torch::kCPU).to(torch::kInt64).contiguous();
  const int64_t* p = c.data_ptr<int64_t>();
  check(p[0] == 0, "cu_seqlens", "must start at 0 (got " + std::to_string(p[0]) + ")");
  std::vector<int64_t> out;
  out.reserve(c.numel() - 1);
  for (int64_t i = 1; i < c.numel(); ++i) {
    check(p[i] >= p[i - 1], "cu_seqlens", "must be nondecreasing (index " + std::to_string(i) + ")");
    out.push_back(p[i] - p[i - 1]);
  }
  return out;
}

torch::Tensor cu_seqlens_from_lengths(const std::vector<int64_t>& seqlens) {
  std::vector<int64_t> cu(seqlens.size() + 1, 0);
  for (size_t i = 0; i < seqlens.size(); ++i) cu[i + 1] = cu[i] + seqlens[i];
  return torch::tensor(cu, torch::kInt64);
}


torch::Tensor varlen_full_attention(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v,
                                    const std::vector<int64_t>& seqlens, double scale, int64_t max_score_bytes) {
  check(q.dim() == 3 && k.sizes() == q.sizes() && v.sizes() == q.sizes(), "varlen attention",
        "expects q, k, v of the same shape [N, H, d]");
  const int64_t N = q.size(0);
  int64_t total = 0;
  for (int64_t l : seqlens) {
    check(l >= 0, "varlen attention", "negative segment length");
    total += l;
  }
  check(total == N, "varlen attention",
        "segment lengths sum to " + std::to_string(total) + " but there are " + std::to_string(N) + " tokens");
  if (scale <= 0) scale = 1.0 / std::sqrt(static_cast<double>(q.size(2)));
  std::vector<torch::Tensor> outs;
  int64_t start = 0;
  for (int64_t l : seqlens) {
    if (l == 0) continue;
    auto sl = [&](const torch::Tensor& t) { return t.narrow(0, start, l).transpose(0, 1); };  // [H, L, d]
    AttentionOptions ao;
    ao.scale = scale;
    ao.max_score_bytes = max_score_bytes;
    outs.push_back(attention(sl(q).unsqueeze(0), sl(k).unsqueeze(0), sl(v).unsqueeze(0), ao)[0].transpose(0, 1));  // [L, H, d]
    start += l;
  }
  if (outs.empty()) return torch::empty_like(q);
  return outs.size() == 1 ? outs[0].contiguous() : torch::cat(outs, 0);
}

// ---- modules ----

SiglipVisionEmbeddingsImpl::SiglipVisionEmbeddingsImpl(const SiglipVisionConfig& c) {
  patch_embedding = register_module("patch_embedding", torch::nn::Linear(c.patch_dim(), c.hidden_size));
  position_embedding = register_module("position_embedding", torch::nn::Embedding(c.num_positions(), c.hidden_size));
}

torch::Tensor SiglipVisionEmbeddingsImpl::forward(const torch::Tensor& pixels, const torch::Tensor& pos_ids) {
  const int64_t in = patch_embedding->weight.size(1);
  check(pixels.dim() == 2 && pixels.size(1) == in, "siglip embeddings",
        "expects packed_pixel_values [N, " + std::to_string(in) + "]");
  check(pos_ids.dim() == 1 && pos_ids.size(0) == pixels.size(0), "siglip embeddings",
        "expects packed_flattened_position_ids [N] with N = " + std::to_string(pixels.size(0)));
  const int64_t P = position_embedding->weight.size(0);
  if (pos_ids.numel() > 0) {
    const int64_t lo = pos_ids.min().item<int64_t>(), hi = pos_ids.max().item<int64_t>();
    check(lo >= 0 && hi < P, "siglip embeddings",
          "position id out of range [0, " + std::to_string(P) + "): got " + std::to_string(lo) + ".." +
              std::to_string(hi) + " (image larger than vit_max_num_patch_per_side?)");
  }
  auto ids = pos_ids.to(pixels.device(), torch::kLong);
  return patch_embedding->forward(pixels) + position_embedding->forward(ids);
}

SiglipAttentionImpl::SiglipAttentionImpl(const SiglipVisionConfig& c)
    : heads(c.num_attention_heads), head_dim(c.head_dim()) {
  const int64_t d = c.hidden_size;
  k_proj = register_module("k_proj", tower_linear(d, d));
  v_proj = register_module("v_proj", tower_linear(d, d));
  q_proj = register_module("q_proj", tower_linear(d, d));
  out_proj = register_module("out_proj", tower_linear(d, d));
}

torch::Tensor SiglipAttentionImpl::forward(const torch::Tensor& x, const std::vector<int64_t>& seqlens) {
  const int64_t N = x.size(0);
  auto q = linear_rows(q_proj, x).view({N, heads, head_dim});
  auto k = linear_rows(k_proj, x).view({N, heads, head_dim});
  auto v = linear_rows(v_proj, x).view({N, heads, head_dim});
  auto o = varlen_full_attention(q, k, v, seqlens);
  return linear_rows(out_proj, o.reshape({N, heads * head_dim}));
}

SiglipMLPImpl::SiglipMLPImpl(const SiglipVisionConfig& c) : act(c.hidden_act) {
  check_hf_activation(act, "siglip mlp");
  fc1 = register_module("fc1", tower_linear(c.hidden_size, c.intermediate_size));
  fc2 = register_module("fc2", tower_linear(c.intermediate_size, c.hidden_size));
}

torch::Tensor SiglipMLPImpl::forward(const torch::Tensor& x) {
  return linear_rows(fc2, hf_activation(act, linear_rows(fc1, x)));
}

SiglipEncoderLayerImpl::SiglipEncoderLayerImpl(const SiglipVisionConfig& c) {
  auto ln = [&] { return torch::nn::LayerNorm(torch::nn::LayerNormOptions({c.hidden_size}).eps(c.layer_norm_eps)); };
  self_attn = register_module("self_attn", SiglipAttention(c));
  layer_norm1 = register_module("layer_norm1", ln());
  mlp = register_module("mlp", SiglipMLP(c));
  layer_norm2 = register_module("layer_norm2", ln());
}

torch::Tensor SiglipEncoderLayerImpl::forward(const torch::Tensor& x, const std::vector<int64_t>& seqlens) {
  auto h = x + self_attn->forward(layer_norm(layer_norm1, x), seqlens);
  return h + mlp->forward(layer_norm(layer_norm2, h));
}

SiglipEncoderImpl::SiglipEncoderImpl(const SiglipVisionConfig& c) {
  layers = register_module("layers", torch::nn::ModuleList());
  for (int64_t i = 0; i < c.layers_built; ++i) {
    SiglipEncoderLayer l(c);
    layers->push_back(l);
    layer_ptrs.push_back(l);
  }
}

torch::Tensor SiglipEncoderImpl::forward(const torch::Tensor& x, const std::vector<int64_t>& seqlens) {
  auto h = x;
  for (auto& l : layer_ptrs) h = l->forward(h, seqlens);
  return h;
}

SiglipVisionTransformerImpl::SiglipVisionTransformerImpl(const SiglipVisionConfig& c) : cfg(c) {
  c.validate();
  embeddings = register_module("embeddings", SiglipVisionEmbeddings(c));
  encoder = register_module("encoder", SiglipEncoder(c));
  post_layernorm = register_module(
      "post_layernorm", torch::nn::LayerNorm(torch::nn::LayerNormOptions({c.hidden_size}).eps(c.layer_norm_eps)));
}

torch::Tensor SiglipVisionTransformerImpl::forward(const torch::Tensor& pixels, const torch::Tensor& pos_ids,
                                                   const std::vector<int64_t>& seqlens) {
  auto h = embeddings->forward(pixels, pos_ids);
  h = encoder->forward(h, seqlens);
  return layer_norm(post_layernorm, h);
}

SiglipVisionModelImpl::SiglipVisionModelImpl(const SiglipVisionConfig& c) {
  vision_model = register_module("vision_model", SiglipVisionTransformer(c));
}

torch::Tensor SiglipVisionModelImpl::forward(const torch::Tensor& pixels, const torch::Tensor& pos_ids,
                                             const torch::Tensor& cu_seqlens) {
  return vision_model->forward(pixels, pos_ids, seqlens_from_cu(cu_seqlens));
}

torch::Tensor SiglipVisionModelImpl::forward_seqlens(const torch::Tensor& pixels, const torch::Tensor& pos_ids,
                                                     const std::vector<int64_t>& seqlens) {
  return vision_model->forward(pixels, pos_ids, seqlens);
}

}  // namespace omni::nn
