#include "omni/models/sensenova_u1/decoder.h"

#include <cmath>

#include "omni/core/error.h"
#include "omni/nn/linear.h"
#include "omni/nn/sequence_parallel.h"
#include "omni/nn/uninitialised.h"

namespace omni::sensenova_u1 {
namespace {
torch::nn::Linear make_linear(int64_t in, int64_t out, bool bias) { return nn::decoder_linear(in, out, bias); }
nn::LlamaConfig mlp_config(const LlmConfig& c) {
  nn::LlamaConfig l;
  l.hidden_size = c.hidden_size;
  l.intermediate_size = c.intermediate_size;
  return l;
}
}  // namespace

TokenRoute all_gen_route(int64_t T, const torch::Device& device) {
  TokenRoute r;
  r.gen = torch::arange(T, torch::TensorOptions().dtype(torch::kLong).device(device));
  r.und = torch::empty({0}, torch::TensorOptions().dtype(torch::kLong).device(device));
  return r;
}

Qwen3MoTAttentionImpl::Qwen3MoTAttentionImpl(const LlmConfig& c)
    : heads(c.num_attention_heads), kv_heads(c.num_key_value_heads), head_dim(c.head_dim) {
  const int64_t C = c.hidden_size, b = c.attention_bias;
  const double eps = c.rms_norm_eps;
  q_proj = register_module("q_proj", make_linear(C, heads * head_dim, b));
  q_proj_mot_gen = register_module("q_proj_mot_gen", make_linear(C, heads * head_dim, b));
  k_proj = register_module("k_proj", make_linear(C, kv_heads * head_dim, b));
  k_proj_mot_gen = register_module("k_proj_mot_gen", make_linear(C, kv_heads * head_dim, b));
  v_proj = register_module("v_proj", make_linear(C, kv_heads * head_dim, b));
  v_proj_mot_gen = register_module("v_proj_mot_gen", make_linear(C, kv_heads * head_dim, b));
  o_proj = register_module("o_proj", make_linear(heads * head_dim, C, b));
  o_proj_mot_gen = register_module("o_proj_mot_gen", make_linear(heads * head_dim, C, b));
  const int64_t half = head_dim / 2;
  q_norm = register_module("q_norm", nn::RMSNorm(half, eps));
  q_norm_mot_gen = register_module("q_norm_mot_gen", nn::RMSNorm(half, eps));
  q_norm_hw = register_module("q_norm_hw", nn::RMSNorm(half, eps));
  q_norm_hw_mot_gen = register_module("q_norm_hw_mot_gen", nn::RMSNorm(half, eps));
  k_norm = register_module("k_norm", nn::RMSNorm(half, eps));
  k_norm_mot_gen = register_module("k_norm_mot_gen", nn::RMSNorm(half, eps));
  k_norm_hw = register_module("k_norm_hw", nn::RMSNorm(half, eps));
  k_norm_hw_mot_gen = register_module("k_norm_hw_mot_gen", nn::RMSNorm(half, eps));
  scale = std::pow(static_cast<double>(head_dim), -0.5);
}

torch::Tensor Qwen3MoTAttentionImpl::forward(const torch::Tensor& x, const AxisRope& rope, const TokenRoute& route,
                                             nn::KVCache* cache, int64_t layer, const nn::AttentionMask& mask) {
  const int64_t T = x.size(0), D = head_dim, half = D / 2, quarter = D / 4;
  // q/k of one branch with their half-head norms: [n, (H + kvH) * D], v [n, kvH * D].
  auto branch = [&](torch::nn::Linear qp, torch::nn::Linear kp, torch::nn::Linear vp, nn::RMSNorm qn,
                    nn::RMSNorm qn_hw, nn::RMSNorm kn, nn::RMSNorm kn_hw) {
    return [=](const torch::Tensor& rows) mutable {
      const int64_t n = rows.size(0);
      auto norm_halves = [&](const torch::Tensor& t, int64_t h, nn::RMSNorm& a, nn::RMSNorm& b) {
        auto v = t.view({n, h, D});
        return torch::cat({a->forward(v.narrow(-1, 0, half)), b->forward(v.narrow(-1, half, half))}, -1)
            .reshape({n, h * D});
      };
      const auto qkv = nn::linear_rows_shared(rows, {qp, kp, vp});
      auto q = norm_halves(qkv[0], heads, qn, qn_hw);
      auto k = norm_halves(qkv[1], kv_heads, kn, kn_hw);
      return torch::cat({q, k, qkv[2]}, 1);
    };
  };
  auto packed = routed(
      x, route, branch(q_proj, k_proj, v_proj, q_norm, q_norm_hw, k_norm, k_norm_hw),
      branch(q_proj_mot_gen, k_proj_mot_gen, v_proj_mot_gen, q_norm_mot_gen, q_norm_hw_mot_gen, k_norm_mot_gen,
             k_norm_hw_mot_gen));
  auto q = packed.narrow(1, 0, heads * D).view({T, heads, D});
  auto k = packed.narrow(1, heads * D, kv_heads * D).view({T, kv_heads, D});
  auto v = packed.narrow(1, (heads + kv_heads) * D, kv_heads * D).reshape({T, kv_heads, D});
  // RoPE per axis: t on [0, D/2), h on [D/2, 3D/4), w on [3D/4, D) (cos/sin [T, d] broadcast over heads)
  auto rotate = [&](const torch::Tensor& t) {
    return torch::cat({nn::apply_rope(t.narrow(-1, 0, half), rope.t),
                       nn::apply_rope(t.narrow(-1, half, quarter), rope.h),
                       nn::apply_rope(t.narrow(-1, half + quarter, quarter), rope.w)},
                      -1);
  };
  auto as_bhtd = [](const torch::Tensor& t) { return t.transpose(0, 1).unsqueeze(0); };
  auto qb = as_bhtd(rotate(q)), kb = as_bhtd(rotate(k)), vb = as_bhtd(v);
  torch::Tensor K = kb, V = vb;
  if (cache) {
    cache->write(layer, kb, vb);
    K = cache->keys(layer, cache->length + T);
    V = cache->values(layer, cache->length + T);
  }
  nn::AttentionOptions ao;
  ao.scale = scale;
  mask.apply_to(ao);
  auto attn = nn::attention(qb, K, V, ao)[0].transpose(0, 1).reshape({T, heads * D});
  return routed(
      attn, route, [&](const torch::Tensor& r) { return nn::linear_rows(o_proj, r); },
      [&](const torch::Tensor& r) { return nn::linear_rows(o_proj_mot_gen, r); });
}

Qwen3MoTDecoderLayerImpl::Qwen3MoTDecoderLayerImpl(const LlmConfig& c) {
  const int64_t C = c.hidden_size;
  const double eps = c.rms_norm_eps;
  self_attn = register_module("self_attn", Qwen3MoTAttention(c));
  mlp = register_module("mlp", nn::LlamaMLP(mlp_config(c)));
  mlp_mot_gen = register_module("mlp_mot_gen", nn::LlamaMLP(mlp_config(c)));
  input_layernorm = register_module("input_layernorm", nn::RMSNorm(C, eps));
  input_layernorm_mot_gen = register_module("input_layernorm_mot_gen", nn::RMSNorm(C, eps));
  post_attention_layernorm = register_module("post_attention_layernorm", nn::RMSNorm(C, eps));
  post_attention_layernorm_mot_gen = register_module("post_attention_layernorm_mot_gen", nn::RMSNorm(C, eps));
}

torch::Tensor Qwen3MoTDecoderLayerImpl::forward(const torch::Tensor& x, const AxisRope& rope, const TokenRoute& route,
                                                nn::KVCache* cache, int64_t layer, const nn::AttentionMask& mask) {
  auto h = routed(
      x, route, [&](const torch::Tensor& r) { return input_layernorm->forward(r); },
      [&](const torch::Tensor& r) { return input_layernorm_mot_gen->forward(r); });
  h = x + self_attn->forward(h, rope, route, cache, layer, mask);
  auto m = routed(
      h, route, [&](const torch::Tensor& r) { return mlp->forward(post_attention_layernorm->forward(r)); },
      [&](const torch::Tensor& r) { return mlp_mot_gen->forward(post_attention_layernorm_mot_gen->forward(r)); });
  return h + m;
}

Qwen3MoTModelImpl::Qwen3MoTModelImpl(const LlmConfig& c) : cfg(c) {
  const int64_t C = c.hidden_size;
  embed_tokens = register_module("embed_tokens", nn::embedding_table(c.vocab_size, C));
  layers = register_module("layers", torch::nn::ModuleList());
  for (int64_t i = 0; i < c.num_hidden_layers; ++i) {
    layer_ptrs.push_back(Qwen3MoTDecoderLayer(c));
    layers->push_back(layer_ptrs.back());
  }
  norm = register_module("norm", nn::RMSNorm(C, c.rms_norm_eps));
  norm_mot_gen = register_module("norm_mot_gen", nn::RMSNorm(C, c.rms_norm_eps));
  // The official t rotary is built for head_dim/2 (its inv_freq taken as every other entry of a
  // 2x-wide table, the same values), the h/w rotary for head_dim/4 with rope_theta_hw.
  inv_freq_t = nn::rope_inv_freq(c.head_dim / 2, c.rope_theta);
  inv_freq_hw = nn::rope_inv_freq(c.head_dim / 4, c.rope_theta_hw);
}

AxisRope Qwen3MoTModelImpl::rope(const torch::Tensor& indexes, const torch::Tensor& like) const {
  check(indexes.dim() == 2 && indexes.size(0) == 3, "indexes", "expects [3, T] (t, h, w)");
  auto one = [&](const torch::Tensor& inv, int64_t row) {
    auto cs = nn::rope_cos_sin(inv.to(like.device()), indexes[row].to(like.device()), like.scalar_type());
    return nn::RopeCosSin{cs.cos.squeeze(0), cs.sin.squeeze(0)};  // [T, d]
  };
  return {one(inv_freq_t, 0), one(inv_freq_hw, 1), one(inv_freq_hw, 2)};
}

nn::KVCache Qwen3MoTModelImpl::make_cache() const {
  return nn::KVCache(cfg.num_hidden_layers, cfg.num_key_value_heads, cfg.head_dim);
}

torch::Tensor Qwen3MoTModelImpl::forward(const torch::Tensor& x, const torch::Tensor& indexes,
                                         const TokenRoute& route_in, nn::KVCache* cache, CacheUse use,
                                         const nn::AttentionMask& mask) {
  nn::KVCache* kv = use == CacheUse::None ? nullptr : cache;
  if (sequence_parallel && !kv) return forward_rows(x, indexes, route_in, mask);
  const int64_t T = x.size(0);
  const TokenRoute route = route_in.on(x.device());
  const auto rp = rope(indexes, x);
  if (kv) {
    check(kv->layers() == cfg.num_hidden_layers, "KV cache", "was made for another model");
    // a Peek writes its block past `length` and leaves length alone
    kv->reserve(T, layer_ptrs.empty() ? x.options() : nn::kv_cache_options(x, layer_ptrs[0]->self_attn->k_proj->weight));
  }
  auto h = x;
  if (kv || !layer_runner) {
    for (int64_t l = 0; l < static_cast<int64_t>(layer_ptrs.size()); ++l)
      h = layer_ptrs[l]->forward(h, rp, route, kv, l, mask);
  } else {
    const nn::KeptMask kept(mask);
    for (int64_t l = 0; l < static_cast<int64_t>(layer_ptrs.size()); ++l)
      h = layer_runner->run(l, h, [layer = layer_ptrs[l], rp, route, kept, l](const torch::Tensor& x) mutable {
        return layer->forward(x, rp, route, nullptr, l, kept.get());
      });
  }
  if (kv && use == CacheUse::Append) kv->length += T;
  return routed(
      h, route, [&](const torch::Tensor& r) { return norm->forward(r); },
      [&](const torch::Tensor& r) { return norm_mot_gen->forward(r); });
}

torch::Tensor Qwen3MoTModelImpl::forward_rows(const torch::Tensor& x, const torch::Tensor& indexes,
                                              const TokenRoute& route_in, const nn::AttentionMask& mask) {
  nn::SequenceParallel& sp = *sequence_parallel;
  check(mask.layout != nullptr, "sequence parallel", "the Qwen3-MoT decoder needs a packed layout");
  const auto split = sp.split(x.size(0));
  const TokenRoute route = route_in.on(x.device()).rows(split.begin, split.end);
  auto h = sp.local_rows(x, 0, split);
  const auto rp = rope(sp.local_rows(indexes.to(x.device()), 1, split), h);
  const auto padded = nn::padded_layout(*mask.layout, split);
  nn::AttentionMask m(&padded);
  m.sequence_parallel = &sp;
  const nn::KeptMask kept(m);
  for (int64_t l = 0; l < static_cast<int64_t>(layer_ptrs.size()); ++l)
    h = nn::run_layer(layer_runner, l, h, [layer = layer_ptrs[l], rp, route, kept, l](const torch::Tensor& x) mutable {
      const nn::AttentionMask m = kept.get();
      return m.sequence_parallel->tie_layer(layer->forward(x, rp, route, nullptr, l, m));
    });
  sp.record_output(h);
  auto out = routed(
      h, route, [&](const torch::Tensor& r) { return norm->forward(r); },
      [&](const torch::Tensor& r) { return norm_mot_gen->forward(r); });
  return sp.gather_rows(out, 0, split);
}

Qwen3MoTForCausalLMImpl::Qwen3MoTForCausalLMImpl(const LlmConfig& c) {
  model = register_module("model", Qwen3MoTModel(c));
  if (!c.tie_word_embeddings)
    lm_head = register_module("lm_head", nn::head_linear(c.hidden_size, c.vocab_size, false));
}

torch::Tensor Qwen3MoTForCausalLMImpl::logits(const torch::Tensor& hidden) {
  return lm_head ? nn::linear_rows(lm_head, hidden) : nn::linear_rows(hidden, model->embed_tokens->weight, {}, {});
}

}  // namespace omni::sensenova_u1
