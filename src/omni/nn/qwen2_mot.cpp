#include "omni/nn/qwen2_mot.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "omni/core/error.h"
#include "omni/nn/linear.h"

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

// ---------------------------------------------------------------------------------------------
torch::Tensor KVContext::keys(int64_t l) const {
  if (!buf_) return {};
  return buf_->k[l].narrow(0, 0, kv_len);
}
torch::Tensor KVContext::values(int64_t l) const {
  if (!buf_) return {};
  return buf_->v[l].narrow(0, 0, kv_len);
}

void KVContext::reserve_append(int64_t t, const torch::TensorOptions& opts) {
  const int64_t need = kv_len + t;
  const bool shared = buf_ && buf_.use_count() > 1;
  const int64_t cap = buf_ ? buf_->k[0].size(0) : 0;
  if (buf_ && !shared && need <= cap) return;
  const int64_t new_cap = std::max<int64_t>(need, std::max<int64_t>(64, cap * 2));
  auto nb = std::make_shared<Buffers>();
  for (int64_t l = 0; l < layers_; ++l) {
    auto k = torch::empty({new_cap, kv_heads_, head_dim_}, opts);
    auto v = torch::empty({new_cap, kv_heads_, head_dim_}, opts);
    if (buf_ && kv_len > 0) {
      k.narrow(0, 0, kv_len).copy_(buf_->k[l].narrow(0, 0, kv_len));
      v.narrow(0, 0, kv_len).copy_(buf_->v[l].narrow(0, 0, kv_len));
    }
    nb->k.push_back(k);
    nb->v.push_back(v);
  }
  buf_ = nb;
}

void KVContext::write(int64_t l, const torch::Tensor& k, const torch::Tensor& v) {
  buf_->k[l].narrow(0, kv_len, k.size(0)).copy_(k);
  buf_->v[l].narrow(0, kv_len, v.size(0)).copy_(v);
}

uint64_t KVContext::bytes() const {
  if (!buf_) return 0;
  uint64_t n = 0;
  for (auto& t : buf_->k) n += t.numel() * t.element_size();
  for (auto& t : buf_->v) n += t.numel() * t.element_size();
  return n;
}

// ---------------------------------------------------------------------------------------------
torch::Tensor packed_attention(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v, bool causal,
                               double scale, const torch::Tensor& mask) {
  const int64_t Tq = q.size(0), H = q.size(1), D = q.size(2);
  const int64_t S = k.size(0), kvH = k.size(1), G = H / kvH;
  const int64_t past = S - Tq;
  // Query head h = kvh * G + g uses kv head kvh: fold (G, rows) into one matmul per kv head.
  auto Kt = k.permute({1, 2, 0});  // [kvH, D, S]
  auto Vh = v.permute({1, 0, 2});  // [kvH, S, D]
  auto qh = q.view({Tq, kvH, G, D}).permute({1, 2, 0, 3});  // [kvH, G, Tq, D]
  // Bound the float32 score block [kvH, G, rows, S] to ~128 MB.
  const int64_t budget = int64_t{32} << 20;  // floats
  const int64_t rows = std::max<int64_t>(1, std::min<int64_t>(Tq, budget / std::max<int64_t>(1, H * S)));
  auto out = torch::empty({Tq, H * D}, q.options());
  for (int64_t r0 = 0; r0 < Tq; r0 += rows) {
    const int64_t n = std::min(rows, Tq - r0);
    auto qc = qh.narrow(2, r0, n).reshape({kvH, G * n, D});
    auto scores = torch::matmul(qc, Kt).mul_(scale).view({kvH, G, n, S});
    if (mask.defined()) {
      scores.add_(mask.narrow(0, r0, n));
    } else if (causal && !(n == 1 && r0 + past == S - 1)) {
      // key j visible to query row i (absolute past + i) iff j <= past + i
      const auto li = torch::TensorOptions().dtype(torch::kLong).device(q.device());
      auto qi = torch::arange(r0 + past, r0 + past + n, li).unsqueeze(1);
      auto kj = torch::arange(S, li).unsqueeze(0);
      scores.masked_fill_(kj > qi, -std::numeric_limits<float>::infinity());
    }
    auto probs = torch::softmax(scores, -1, torch::kFloat32).to(q.scalar_type()).view({kvH, G * n, S});
    auto o = torch::matmul(probs, Vh).view({kvH, G, n, D}).permute({2, 0, 1, 3});  // [n, kvH, G, D]
    out.narrow(0, r0, n).copy_(o.reshape({n, H * D}));
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
namespace {
torch::nn::Linear make_linear(int64_t in, int64_t out, bool bias) {
  return torch::nn::Linear(torch::nn::LinearOptions(in, out).bias(bias));
}

torch::Tensor rope_rows(const torch::Tensor& x, const RopeCosSin& cs) {
  // x [T, H, D]; cos/sin [T, D] (unsqueeze_dim=1 in the official apply_rotary_pos_emb)
  auto c = cs.cos.unsqueeze(1), s = cs.sin.unsqueeze(1);
  return x * c + rotate_half(x) * s;
}
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
                                        const torch::Tensor& past_k, const torch::Tensor& past_v, bool causal,
                                        const torch::Tensor& mask, torch::Tensor* k_new, torch::Tensor* v_new) {
  const int64_t T = x.size(0);
  auto qkv = [&](torch::nn::Linear qp, torch::nn::Linear kp, torch::nn::Linear vp, RMSNorm qn, RMSNorm kn) {
    return [=](const torch::Tensor& rows) mutable {
      const int64_t n = rows.size(0);
      auto q = linear_rows(qp, rows).view({n, heads, head_dim});
      auto k = linear_rows(kp, rows).view({n, kv_heads, head_dim});
      auto v = linear_rows(vp, rows);
      if (qn) {
        q = qn->forward(q);
        k = kn->forward(k);
      }
      // one [n, (H + 2 kvH) * D] tensor so a single route_rows scatters all three
      return torch::cat({q.reshape({n, -1}), k.reshape({n, -1}), v}, 1);
    };
  };
  auto packed = route_rows(x, route, qkv(q_proj, k_proj, v_proj, q_norm, k_norm),
                           qkv(q_proj_moe_gen, k_proj_moe_gen, v_proj_moe_gen, q_norm_moe_gen, k_norm_moe_gen));
  auto q = packed.narrow(1, 0, heads * head_dim).view({T, heads, head_dim});
  auto k = packed.narrow(1, heads * head_dim, kv_heads * head_dim).view({T, kv_heads, head_dim});
  auto v = packed.narrow(1, (heads + kv_heads) * head_dim, kv_heads * head_dim).reshape({T, kv_heads, head_dim});
  q = rope_rows(q, rope);
  k = rope_rows(k, rope);
  if (k_new) *k_new = k;
  if (v_new) *v_new = v;
  torch::Tensor K = k, V = v;
  if (past_k.defined() && past_k.size(0) > 0) {
    K = torch::cat({past_k, k}, 0);
    V = torch::cat({past_v, v}, 0);
  }
  auto attn = packed_attention(q, K, V, causal, scale, mask);  // [T, H*D]
  return route_rows(
      attn, route, [&](const torch::Tensor& r) { return linear_rows(o_proj, r); },
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
                                           const torch::Tensor& past_k, const torch::Tensor& past_v, bool causal,
                                           const torch::Tensor& mask, torch::Tensor* k_new, torch::Tensor* v_new) {
  auto h = route_rows(
      x, route, [&](const torch::Tensor& r) { return input_layernorm->forward(r); },
      [&](const torch::Tensor& r) { return input_layernorm_moe_gen->forward(r); });
  h = x + self_attn->forward(h, rope, route, past_k, past_v, causal, mask, k_new, v_new);
  auto m = route_rows(
      h, route, [&](const torch::Tensor& r) { return mlp->forward(post_attention_layernorm->forward(r)); },
      [&](const torch::Tensor& r) { return mlp_moe_gen->forward(post_attention_layernorm_moe_gen->forward(r)); });
  return h + m;
}

MoTModelImpl::MoTModelImpl(const Qwen2MoTConfig& c) : cfg(c) {
  const int64_t C = c.llm.hidden_size;
  embed_tokens = register_module("embed_tokens", torch::nn::Embedding(c.llm.vocab_size, C));
  layers = register_module("layers", torch::nn::ModuleList());
  for (int64_t i = 0; i < c.llm.num_hidden_layers; ++i) {
    layer_ptrs.push_back(MoTDecoderLayer(c));
    layers->push_back(layer_ptrs.back());
  }
  norm = register_module("norm", RMSNorm(C, c.llm.rms_norm_eps));
  norm_moe_gen = register_module("norm_moe_gen", RMSNorm(C, c.llm.rms_norm_eps));
  inv_freq = rope_inv_freq(c.llm.head_dim, c.llm.rope_theta);
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
  if (update) ctx.reserve_append(T, x.options());
  auto h = x;
  for (int64_t l = 0; l < static_cast<int64_t>(layer_ptrs.size()); ++l) {
    torch::Tensor kn, vn;
    h = layer_ptrs[l]->forward(h, rope, route, ctx.keys(l), ctx.values(l), causal, {}, &kn, &vn);
    if (update) ctx.write(l, kn, vn);
  }
  if (update) ctx.kv_len += T;
  return route_rows(
      h, route, [&](const torch::Tensor& r) { return norm->forward(r); },
      [&](const torch::Tensor& r) { return norm_moe_gen->forward(r); });
}

torch::Tensor MoTModelImpl::forward_train(const torch::Tensor& x, const torch::Tensor& positions,
                                          const TokenRoute& route_in, const torch::Tensor& mask) {
  const TokenRoute route = route_in.on(x.device());
  auto rope = packed_rope(inv_freq, positions, x);
  auto h = x;
  for (auto& layer : layer_ptrs) h = layer->forward(h, rope, route, {}, {}, false, mask, nullptr, nullptr);
  return route_rows(
      h, route, [&](const torch::Tensor& r) { return norm->forward(r); },
      [&](const torch::Tensor& r) { return norm_moe_gen->forward(r); });
}

MoTForCausalLMImpl::MoTForCausalLMImpl(const Qwen2MoTConfig& c) : cfg(c) {
  model = register_module("model", MoTModel(c));
  lm_head = register_module("lm_head", make_linear(c.llm.hidden_size, c.llm.vocab_size, false));
}

torch::Tensor MoTForCausalLMImpl::logits(const torch::Tensor& hidden) { return linear_rows(lm_head, hidden); }

}  // namespace omni::nn
