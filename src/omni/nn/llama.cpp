#include "omni/nn/llama.h"
#include "omni/nn/attention.h"
#include "omni/nn/elementwise_cpu.h"
#include "omni/nn/fp32_math.h"
#include "omni/nn/linear.h"
#include "omni/nn/mask_value.h"
#include "omni/nn/sequence_parallel.h"
#include "omni/nn/uninitialised.h"

#include <ATen/Parallel.h>

#include <algorithm>
#include <cstring>
#include <limits>

#include "omni/core/error.h"

namespace omni::nn {

LlamaConfig LlamaConfig::from_hf(const io::HfConfig& j) {
  LlamaConfig c;
  c.vocab_size = j.get_or<int64_t>("vocab_size", 32000);
  c.hidden_size = j.get_or<int64_t>("hidden_size", 4096);
  c.intermediate_size = j.get_or<int64_t>("intermediate_size", 11008);
  c.num_hidden_layers = j.get_or<int64_t>("num_hidden_layers", 32);
  c.num_attention_heads = j.get_or<int64_t>("num_attention_heads", 32);
  c.num_key_value_heads = j.get_or<int64_t>("num_key_value_heads", c.num_attention_heads);
  check(c.num_attention_heads > 0 && (c.hidden_size % c.num_attention_heads == 0 || j.has("head_dim")),
        j.where("num_attention_heads"), "must divide hidden_size");
  c.head_dim = j.get_or<int64_t>("head_dim", c.hidden_size / c.num_attention_heads);
  c.max_position_embeddings = j.get_or<int64_t>("max_position_embeddings", 2048);
  c.rms_norm_eps = j.get_or<double>("rms_norm_eps", 1e-6);
  c.rope_theta = j.get_or<double>("rope_theta", 10000.0);
  c.attention_bias = j.get_or<bool>("attention_bias", false);
  c.mlp_bias = j.get_or<bool>("mlp_bias", false);
  c.tie_word_embeddings = j.get_or<bool>("tie_word_embeddings", false);
  c.hidden_act = j.get_or<std::string>("hidden_act", "silu");
  check(c.hidden_act == "silu", j.where("hidden_act"), "only \"silu\" is supported, got \"" + c.hidden_act + "\"");
  check(!j.has("rope_scaling"), j.where("rope_scaling"), "RoPE scaling is not supported");
  check(j.get_or<int64_t>("pretraining_tp", 1) == 1, j.where("pretraining_tp"), "only 1 is supported");
  check(c.num_key_value_heads > 0 && c.num_attention_heads % c.num_key_value_heads == 0,
        j.where("num_key_value_heads"), "must divide num_attention_heads");
  return c;
}

// ---------------------------------------------------------------------------------------------
RMSNormImpl::RMSNormImpl(int64_t dim, double eps_) : eps(eps_) {
  weight = register_parameter("weight", torch::ones({dim}));
}

torch::Tensor RMSNormImpl::forward(const torch::Tensor& x) {
  torch::Tensor fused;  // inference on the CPU: one pass (elementwise_cpu.h)
  if (rms_norm_rows(x, weight, eps, fused)) return fused;
  const auto dtype = x.scalar_type();
  auto h = x.to(torch::kFloat32);
  auto variance = h.pow(2).mean(-1, /*keepdim=*/true);
  h = h * torch::rsqrt(variance + eps);
  return weight * h.to(dtype);
}

// ---------------------------------------------------------------------------------------------
LlamaAttentionImpl::LlamaAttentionImpl(const LlamaConfig& c)
    : heads(c.num_attention_heads), kv_heads(c.num_key_value_heads), head_dim(c.head_dim) {
  const bool qkvb = c.attention_bias || c.qkv_bias;
  q_proj = register_module("q_proj", decoder_linear(c.hidden_size, heads * head_dim, qkvb));
  k_proj = register_module("k_proj", decoder_linear(c.hidden_size, kv_heads * head_dim, qkvb));
  v_proj = register_module("v_proj", decoder_linear(c.hidden_size, kv_heads * head_dim, qkvb));
  o_proj = register_module("o_proj", decoder_linear(heads * head_dim, c.hidden_size, c.attention_bias));
  scale = 1.0 / std::sqrt(static_cast<double>(head_dim));
}

torch::Tensor LlamaAttentionImpl::forward(const torch::Tensor& x, const RopeCosSin& rope, const AttentionMask& mask,
                                          KVCache* cache, int64_t layer) {
  const int64_t B = x.size(0), T = x.size(1);
  const auto qkv = linear_rows_shared(x, {q_proj, k_proj, v_proj});  // one pass over the three weights
  auto q = qkv[0].view({B, T, heads, head_dim}).transpose(1, 2);
  auto k = qkv[1].view({B, T, kv_heads, head_dim}).transpose(1, 2);
  auto v = qkv[2].view({B, T, kv_heads, head_dim}).transpose(1, 2);
  q = apply_rope(q, rope);
  k = apply_rope(k, rope);

  torch::Tensor K = k, V = v;
  if (cache) {  // reserved by the model; the new positions go in place, attention reads the prefix
    cache->write(layer, k, v);
    K = cache->keys(layer, cache->length + T);
    V = cache->values(layer, cache->length + T);
  }
  AttentionOptions ao;
  ao.scale = scale;
  mask.apply_to(ao);  // [B|1, 1, T, S] (HF's finfo.min causal + padding mask) or none for one step
  auto out = attention(q, K, V, ao).transpose(1, 2).reshape({B, T, heads * head_dim});
  return linear_rows(o_proj, out);
}

// ---------------------------------------------------------------------------------------------
LlamaMLPImpl::LlamaMLPImpl(const LlamaConfig& c) {
  auto lin = [&](int64_t i, int64_t o) { return decoder_linear(i, o, c.mlp_bias); };
  gate_proj = register_module("gate_proj", lin(c.hidden_size, c.intermediate_size));
  up_proj = register_module("up_proj", lin(c.hidden_size, c.intermediate_size));
  down_proj = register_module("down_proj", lin(c.intermediate_size, c.hidden_size));
}

torch::Tensor LlamaMLPImpl::forward(const torch::Tensor& x) {
  auto gate_up = linear_rows_shared(x, {gate_proj, up_proj});
  if (silu_mul_(gate_up[0], gate_up[1])) return linear_rows(down_proj, gate_up[0]);  // inference: in place
  const auto act = in_fp32_on_cpu(gate_up[0], [](const torch::Tensor& t) { return torch::silu(t); });
  return linear_rows(down_proj, act * gate_up[1]);
}

// ---------------------------------------------------------------------------------------------
LlamaDecoderLayerImpl::LlamaDecoderLayerImpl(const LlamaConfig& c) {
  self_attn = register_module("self_attn", LlamaAttention(c));
  mlp = register_module("mlp", LlamaMLP(c));
  input_layernorm = register_module("input_layernorm", RMSNorm(c.hidden_size, c.rms_norm_eps));
  post_attention_layernorm = register_module("post_attention_layernorm", RMSNorm(c.hidden_size, c.rms_norm_eps));
}

torch::Tensor LlamaDecoderLayerImpl::forward(const torch::Tensor& x, const RopeCosSin& rope, const AttentionMask& mask,
                                             KVCache* cache, int64_t layer) {
  auto h = x + self_attn->forward(input_layernorm->forward(x), rope, mask, cache, layer);
  return h + mlp->forward(post_attention_layernorm->forward(h));
}

// ---------------------------------------------------------------------------------------------
torch::Tensor causal_mask(int64_t T, int64_t past, const torch::Tensor& attention_mask,
                          const torch::TensorOptions& opts) {
  const int64_t S = past + T;
  if (T == 1 && !attention_mask.defined()) return {};
  auto dev = opts.device();
  auto iopts = torch::TensorOptions().dtype(torch::kInt64).device(dev);
  auto qpos = torch::arange(past, S, iopts).view({T, 1});
  auto kpos = torch::arange(0, S, iopts).view({1, S});
  auto blocked = (kpos > qpos).view({1, T, S});  // [1, T, S]
  if (attention_mask.defined()) {
    check(attention_mask.dim() == 2 && attention_mask.size(1) == S, "attention_mask",
          "expected [B, " + std::to_string(S) + "]");
    blocked = blocked | (attention_mask.to(dev) == 0).view({attention_mask.size(0), 1, S});
  }
  auto m = torch::zeros(blocked.sizes(), opts);
  m.masked_fill_(blocked, finfo_lowest(c10::typeMetaToScalarType(opts.dtype())));  // HF: of the activation dtype
  return m.unsqueeze(1);  // [B|1, 1, T, S]
}

LlamaModelImpl::LlamaModelImpl(const LlamaConfig& c) : cfg(c) {
  embed_tokens = register_module("embed_tokens", embedding_table(c.vocab_size, c.hidden_size));
  layers = register_module("layers", torch::nn::ModuleList());
  for (int64_t i = 0; i < c.num_hidden_layers; ++i) {
    LlamaDecoderLayer l(c);
    layers->push_back(l);
    layer_ptrs.push_back(l);
  }
  norm = register_module("norm", RMSNorm(c.hidden_size, c.rms_norm_eps));
  inv_freq = rope_inv_freq(c.head_dim, c.rope_theta);
}

KVCache LlamaModelImpl::make_cache(int64_t batch, int64_t capacity) const {
  const auto& w = norm->weight;  // the compute dtype and device (the embedding table may be narrower)
  return KVCache::allocate(cfg.num_hidden_layers, batch, cfg.num_key_value_heads, capacity, cfg.head_dim,
                           layer_ptrs.empty() ? w.options() : kv_cache_options(w, layer_ptrs[0]->self_attn->k_proj->weight));
}

torch::Tensor LlamaModelImpl::forward(const torch::Tensor& inputs_embeds, KVCache* cache,
                                      const torch::Tensor& position_ids, const torch::Tensor& attention_mask) {
  check(inputs_embeds.dim() == 3 && inputs_embeds.size(2) == cfg.hidden_size, "llama forward",
        "inputs_embeds must be [B, T, " + std::to_string(cfg.hidden_size) + "]");
  const int64_t B = inputs_embeds.size(0), T = inputs_embeds.size(1);
  const int64_t past = cache ? cache->length : 0;
  if (cache) {
    check(cache->layers() == cfg.num_hidden_layers && cache->batch() == B, "kv cache",
          "was allocated for another model or batch size");
    cache->reserve(T, inputs_embeds.options());
  }
  const auto dev = inputs_embeds.device();
  if (inv_freq.device() != dev) inv_freq = inv_freq.to(dev);
  torch::Tensor pos = position_ids.defined()
                          ? position_ids.to(dev)
                          : torch::arange(past, past + T, torch::TensorOptions().dtype(torch::kInt64).device(dev));
  if (sequence_parallel && !cache) return forward_rows(inputs_embeds, pos, attention_mask);
  const auto rope = rope_cos_sin(inv_freq, pos, inputs_embeds.scalar_type());
  const auto mask = causal_mask(T, past, attention_mask, inputs_embeds.options());

  auto h = inputs_embeds;
  if (cache || !layer_runner) {
    for (size_t i = 0; i < layer_ptrs.size(); ++i) h = layer_ptrs[i]->forward(h, rope, mask, cache, static_cast<int64_t>(i));
  } else {
    for (size_t i = 0; i < layer_ptrs.size(); ++i)
      h = layer_runner->run(static_cast<int64_t>(i), h, [layer = layer_ptrs[i], rope, mask, i](const torch::Tensor& x) mutable {
        return layer->forward(x, rope, mask, nullptr, static_cast<int64_t>(i));
      });
  }
  if (cache) cache->length += T;
  return norm->forward(h);
}

torch::Tensor LlamaModelImpl::forward_rows(const torch::Tensor& inputs_embeds, const torch::Tensor& pos,
                                           const torch::Tensor& attention_mask) {
  SequenceParallel& sp = *sequence_parallel;
  const auto s = sp.split(inputs_embeds.size(1));
  const auto rope = rope_cos_sin(inv_freq, sp.local_rows(pos, -1, s), inputs_embeds.scalar_type());
  torch::Tensor keep = attention_mask;  // the padding rows are keys nobody attends to
  if (keep.defined() && s.padded > s.length)
    keep = torch::cat({keep, torch::zeros({keep.size(0), s.padded - s.length}, keep.options())}, 1);
  AttentionMask mask(causal_mask(s.padded, 0, keep, inputs_embeds.options()));
  mask.sequence_parallel = &sp;
  auto h = sp.local_rows(inputs_embeds, 1, s);
  for (size_t i = 0; i < layer_ptrs.size(); ++i)
    h = run_layer(layer_runner, static_cast<int64_t>(i), h, [layer = layer_ptrs[i], rope, mask, i](const torch::Tensor& x) mutable {
      return mask.sequence_parallel->tie_layer(layer->forward(x, rope, mask, nullptr, static_cast<int64_t>(i)));
    });
  sp.record_output(h);
  return sp.gather_rows(norm->forward(h), 1, s);
}

LlamaForCausalLMImpl::LlamaForCausalLMImpl(const LlamaConfig& c) : cfg(c) {
  model = register_module("model", LlamaModel(c));
  if (c.tie_word_embeddings) {
    // logits() uses the embedding matrix; a checkpoint then needs no lm_head.weight.
  } else {
    lm_head = register_module("lm_head",
                              head_linear(c.hidden_size, c.vocab_size, false));
  }
}

}  // namespace omni::nn
