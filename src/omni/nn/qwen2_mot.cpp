#include "omni/nn/qwen2_mot.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "omni/core/error.h"
#include "omni/nn/attention.h"
#include "omni/nn/linear.h"
#include "omni/nn/sequence_parallel.h"
#include "omni/nn/uninitialised.h"

namespace omni::nn {

Qwen2MoTConfig Qwen2MoTConfig::from_hf(const io::HfConfig& j, bool qk_norm) {
  Qwen2MoTConfig c;
  c.llm = LlamaConfig::from_hf(j);
  c.llm.qkv_bias = true;
  c.llm.attention_bias = false;
  c.llm.tie_word_embeddings = false;
  c.qk_norm = qk_norm;
  return c;
}

TokenRoute TokenRoute::gen_range(int64_t T, int64_t begin, int64_t end) {
  check(0 <= begin && begin <= end && end <= T, "TokenRoute", "generation rows out of range");
  TokenRoute r;
  auto all = torch::arange(T, torch::kLong);
  r.gen = all.slice(0, begin, end).clone();
  r.und = torch::cat({all.slice(0, 0, begin), all.slice(0, end, T)});
  return r;
}

TokenRoute TokenRoute::on(const torch::Device& device) const {
  TokenRoute r;
  if (und.defined()) r.und = und.to(device);
  if (gen.defined()) r.gen = gen.to(device);
  return r;
}

TokenRoute TokenRoute::from_gen_mask(const torch::Tensor& is_gen) {
  TokenRoute r;
  auto m = is_gen.to(torch::kBool);
  r.gen = torch::nonzero(m).view(-1);
  r.und = torch::nonzero(~m).view(-1);
  return r;
}

TokenRoute TokenRoute::rows(int64_t begin, int64_t end) const {
  if (all_und()) return understanding();
  auto in = gen.masked_select((gen >= begin) & (gen < end)) - begin;
  auto is_gen = torch::zeros({end - begin}, torch::TensorOptions().dtype(torch::kBool).device(gen.device()));
  return from_gen_mask(is_gen.index_fill(0, in, true));
}

// ---------------------------------------------------------------------------------------------
namespace {
torch::nn::Linear make_linear(int64_t in, int64_t out, bool bias) { return decoder_linear(in, out, bias); }

}  // namespace

MoTAttentionImpl::MoTAttentionImpl(const Qwen2MoTConfig& c)
    : heads(c.llm.num_attention_heads), kv_heads(c.llm.num_key_value_heads), head_dim(c.llm.head_dim) {
  const int64_t C = c.llm.hidden_size;
  q_proj = register_module("q_proj", make_linear(C, heads * head_dim, true));
  k_proj = register_module("k_proj", make_linear(C, kv_heads * head_dim, true));
  v_proj = register_module("v_proj", make_linear(C, kv_heads * head_dim, true));
  o_proj = register_module("o_proj", make_linear(heads * head_dim, C, false));
  if (c.qk_norm) {
    q_norm = register_module("q_norm", RMSNorm(head_dim, c.llm.rms_norm_eps));
    k_norm = register_module("k_norm", RMSNorm(head_dim, c.llm.rms_norm_eps));
    q_norm_moe_gen = register_module("q_norm_moe_gen", RMSNorm(head_dim, c.llm.rms_norm_eps));
    k_norm_moe_gen = register_module("k_norm_moe_gen", RMSNorm(head_dim, c.llm.rms_norm_eps));
  }
  q_proj_moe_gen = register_module("q_proj_moe_gen", make_linear(C, heads * head_dim, true));
  k_proj_moe_gen = register_module("k_proj_moe_gen", make_linear(C, kv_heads * head_dim, true));
  v_proj_moe_gen = register_module("v_proj_moe_gen", make_linear(C, kv_heads * head_dim, true));
  o_proj_moe_gen = register_module("o_proj_moe_gen", make_linear(heads * head_dim, C, false));
  scale = 1.0 / std::sqrt(static_cast<double>(head_dim));
}

torch::Tensor MoTAttentionImpl::forward(const torch::Tensor& x, const RopeCosSin& rope, const TokenRoute& route,
                                        KVCache* cache, int64_t layer, bool update, bool causal,
                                        const AttentionMask& mask) {
  const int64_t T = x.size(0);
  auto qkv = [&](torch::nn::Linear qp, torch::nn::Linear kp, torch::nn::Linear vp, RMSNorm qn, RMSNorm kn,
                 bool detach) {
    return [=](const torch::Tensor& rows) mutable {
      const int64_t n = rows.size(0);
      const auto qkv = linear_rows_shared(rows, {qp, kp, vp});
      auto q = qkv[0].view({n, heads, head_dim});
      auto k = qkv[1].view({n, kv_heads, head_dim});
      auto v = qkv[2];
      if (qn) {
        q = qn->forward(q);
        k = kn->forward(k);
      }
      if (detach) {  // freeze_und: the understanding rows' Q (normed), K (normed) and V
        q = q.detach();
        k = k.detach();
        v = v.detach();
      }
      // one [n, (H + 2 kvH) * D] tensor so a single route_rows scatters all three
      return torch::cat({q.reshape({n, -1}), k.reshape({n, -1}), v}, 1);
    };
  };
  auto packed = route_rows(x, route, qkv(q_proj, k_proj, v_proj, q_norm, k_norm, freeze_und),
                           qkv(q_proj_moe_gen, k_proj_moe_gen, v_proj_moe_gen, q_norm_moe_gen, k_norm_moe_gen, false));
  auto q = packed.narrow(1, 0, heads * head_dim).view({T, heads, head_dim});
  auto k = packed.narrow(1, heads * head_dim, kv_heads * head_dim).view({T, kv_heads, head_dim});
  auto v = packed.narrow(1, (heads + kv_heads) * head_dim, kv_heads * head_dim).reshape({T, kv_heads, head_dim});
  // [T, heads, D] -> [1, heads, T, D]: the shared attention's layout (the cache's too)
  auto as_bhtd = [](const torch::Tensor& t) { return t.transpose(0, 1).unsqueeze(0); };
  q = as_bhtd(apply_rope(q, rope));  // cos/sin [T, D] broadcast over the heads dim
  auto kb = as_bhtd(apply_rope(k, rope)), vb = as_bhtd(v);
  torch::Tensor K = kb, V = vb;
  if (cache && update) {
    cache->write(layer, kb, vb);
    K = cache->keys(layer, cache->length + T);
    V = cache->values(layer, cache->length + T);
  } else if (cache && cache->length > 0) {  // a query against the context that leaves it unchanged
    K = cached_then_fresh(cache->keys(layer), kb);
    V = cached_then_fresh(cache->values(layer), vb);
  }
  AttentionOptions ao;
  ao.scale = scale;
  ao.causal = causal;
  mask.apply_to(ao);
  auto attn = attention(q, K, V, ao)[0].transpose(0, 1).reshape({T, heads * head_dim});
  return route_rows(
      attn, route,
      [&](const torch::Tensor& r) {
        auto o = linear_rows(o_proj, r);
        return freeze_und ? o.detach() : o;
      },
      [&](const torch::Tensor& r) { return linear_rows(o_proj_moe_gen, r); });
}

MoTDecoderLayerImpl::MoTDecoderLayerImpl(const Qwen2MoTConfig& c) {
  const int64_t C = c.llm.hidden_size;
  const double eps = c.llm.rms_norm_eps;
  self_attn = register_module("self_attn", MoTAttention(c));
  mlp = register_module("mlp", LlamaMLP(c.llm));
  mlp_moe_gen = register_module("mlp_moe_gen", LlamaMLP(c.llm));
  input_layernorm = register_module("input_layernorm", RMSNorm(C, eps));
  input_layernorm_moe_gen = register_module("input_layernorm_moe_gen", RMSNorm(C, eps));
  post_attention_layernorm = register_module("post_attention_layernorm", RMSNorm(C, eps));
  post_attention_layernorm_moe_gen = register_module("post_attention_layernorm_moe_gen", RMSNorm(C, eps));
}

torch::Tensor MoTDecoderLayerImpl::forward(const torch::Tensor& x, const RopeCosSin& rope, const TokenRoute& route,
                                           KVCache* cache, int64_t layer, bool update, bool causal,
                                           const AttentionMask& mask) {
  auto h = route_rows(
      x, route, [&](const torch::Tensor& r) { return input_layernorm->forward(r); },
      [&](const torch::Tensor& r) { return input_layernorm_moe_gen->forward(r); });
  h = x + self_attn->forward(h, rope, route, cache, layer, update, causal, mask);
  auto m = route_rows(
      h, route,
      [&](const torch::Tensor& r) {
        auto y = mlp->forward(post_attention_layernorm->forward(r));
        return freeze_und ? y.detach() : y;
      },
      [&](const torch::Tensor& r) { return mlp_moe_gen->forward(post_attention_layernorm_moe_gen->forward(r)); });
  return h + m;
}

MoTModelImpl::MoTModelImpl(const Qwen2MoTConfig& c) : cfg(c) {
  const int64_t C = c.llm.hidden_size;
  embed_tokens = register_module("embed_tokens", embedding_table(c.llm.vocab_size, C));
  layers = register_module("layers", torch::nn::ModuleList());
  for (int64_t i = 0; i < c.llm.num_hidden_layers; ++i) {
    layer_ptrs.push_back(MoTDecoderLayer(c));
    layers->push_back(layer_ptrs.back());
  }
  norm = register_module("norm", RMSNorm(C, c.llm.rms_norm_eps));
  norm_moe_gen = register_module("norm_moe_gen", RMSNorm(C, c.llm.rms_norm_eps));
  inv_freq = rope_inv_freq(c.llm.head_dim, c.llm.rope_theta);
}

void MoTModelImpl::set_freeze_und(bool on) {
  freeze_und = on;
  for (auto& l : layer_ptrs) {
    l->freeze_und = on;
    l->self_attn->freeze_und = on;
  }
}

KVContext MoTModelImpl::make_context() const {
  return KVContext(cfg.llm.num_hidden_layers, cfg.llm.num_key_value_heads, cfg.llm.head_dim);
}

namespace {
RopeCosSin packed_rope(const torch::Tensor& inv_freq, const torch::Tensor& positions, const torch::Tensor& x) {
  auto cs = rope_cos_sin(inv_freq.to(x.device()), positions.to(x.device()).view({-1}), x.scalar_type());
  return {cs.cos.squeeze(0), cs.sin.squeeze(0)};  // [T, D]
}
}  // namespace

torch::Tensor MoTModelImpl::forward_inference(const torch::Tensor& x, const torch::Tensor& positions, KVContext& ctx,
                                              const TokenRoute& route_in, bool causal, bool update) {
  const int64_t T = x.size(0);
  check(ctx.layers() == cfg.llm.num_hidden_layers, "KVContext", "was made for another model");
  const TokenRoute route = route_in.on(x.device());
  auto rope = packed_rope(inv_freq, positions, x);
  if (update)
    ctx.reserve(T, layer_ptrs.empty() ? x.options() : kv_cache_options(x, layer_ptrs[0]->self_attn->k_proj->weight));
  auto h = x;
  for (int64_t l = 0; l < static_cast<int64_t>(layer_ptrs.size()); ++l)
    h = layer_ptrs[l]->forward(h, rope, route, &ctx, l, update, causal, {});
  if (update) ctx.length += T;
  return route_rows(
      h, route, [&](const torch::Tensor& r) { return norm->forward(r); },
      [&](const torch::Tensor& r) { return norm_moe_gen->forward(r); });
}

torch::Tensor MoTModelImpl::forward_train(const torch::Tensor& x, const torch::Tensor& positions,
                                          const TokenRoute& route_in, const AttentionMask& mask) {
  TokenRoute route = route_in.on(x.device());
  auto h = x;
  torch::Tensor pos = positions.view({-1});
  AttentionMask m = mask;
  PackedLayout padded;
  SequenceParallel::Split split;
  if (sequence_parallel) {  // this process's rows through the layers (the mask stays whole)
    check(mask.layout != nullptr, "sequence parallel", "the MoT decoder needs a packed layout");
    split = sequence_parallel->split(x.size(0));
    h = sequence_parallel->local_rows(x, 0, split);
    pos = sequence_parallel->local_rows(pos, 0, split);
    route = route.rows(split.begin, split.end);
    padded = padded_layout(*mask.layout, split);
    m = AttentionMask(&padded);
    m.sequence_parallel = sequence_parallel;
  }
  auto rope = packed_rope(inv_freq, pos, h);
  if (freeze_und) h = route_rows(h, route, [](const torch::Tensor& r) { return r.detach(); }, [](const torch::Tensor& r) { return r; });
  const KeptMask kept(m);
  for (int64_t l = 0; l < static_cast<int64_t>(layer_ptrs.size()); ++l)
    h = run_layer(layer_runner, l, h, [layer = layer_ptrs[l], rope, route, kept, l](const torch::Tensor& x) mutable {
      const AttentionMask m = kept.get();
      auto y = layer->forward(x, rope, route, nullptr, l, false, false, m);
      return m.sequence_parallel ? m.sequence_parallel->tie_layer(y) : y;
    });
  if (sequence_parallel) sequence_parallel->record_output(h);
  auto out = route_rows(
      h, route,
      [&](const torch::Tensor& r) {
        auto y = norm->forward(r);
        return freeze_und ? y.detach() : y;
      },
      [&](const torch::Tensor& r) { return norm_moe_gen->forward(r); });
  return sequence_parallel ? sequence_parallel->gather_rows(out, 0, split) : out;
}

MoTForCausalLMImpl::MoTForCausalLMImpl(const Qwen2MoTConfig& c) : cfg(c) {
  model = register_module("model", MoTModel(c));
  lm_head = register_module("lm_head", head_linear(c.llm.hidden_size, c.llm.vocab_size, false));
}

torch::Tensor MoTForCausalLMImpl::logits(const torch::Tensor& hidden) { return linear_rows(lm_head, hidden); }

}  // namespace omni::nn
