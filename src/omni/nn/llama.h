// A Llama-style decoder (Hugging Face LlamaForCausalLM numerics, eager attention), reusable for
// Qwen2-style models (attention_bias adds q/k/v biases). Module names mirror HF checkpoints:
//   model.embed_tokens, model.layers.N.{self_attn.{q,k,v,o}_proj, mlp.{gate,up,down}_proj,
//   input_layernorm, post_attention_layernorm}, model.norm, lm_head
//
// Numerics (as transformers 4.48 LlamaModel):
//   RMSNorm: w * (x.float() * rsqrt(mean(x^2) + eps)).to(dtype)
//   attention: softmax(float32(q k^T * 1/sqrt(d) + causal/padding mask)) v; GQA shares each kv head
//              between num_heads / num_kv_heads consecutive query heads (== HF repeat_kv)
//   RoPE: see rope.h; MLP: down(silu(gate(x)) * up(x))
#pragma once
#include <torch/torch.h>

#include <string>

#include "omni/io/hf_config.h"
#include "omni/nn/kv_cache.h"
#include "omni/nn/layer_runner.h"
#include "omni/nn/linear.h"
#include "omni/nn/rope.h"

namespace omni::nn {

struct LlamaConfig {
  int64_t vocab_size = 32000;
  int64_t hidden_size = 4096;
  int64_t intermediate_size = 11008;
  int64_t num_hidden_layers = 32;
  int64_t num_attention_heads = 32;
  int64_t num_key_value_heads = 32;
  int64_t head_dim = 128;
  int64_t max_position_embeddings = 2048;
  double rms_norm_eps = 1e-6;
  double rope_theta = 10000.0;
  bool attention_bias = false;  // q/k/v/o biases (Llama); Qwen2 sets q/k/v only: use qkv_bias
  bool qkv_bias = false;        // q/k/v biases without an o_proj bias (Qwen2)
  bool mlp_bias = false;
  bool tie_word_embeddings = false;
  std::string hidden_act = "silu";

  // transformers LlamaConfig with its defaults applied explicitly (num_key_value_heads defaults to
  // num_attention_heads, head_dim to hidden_size / num_attention_heads). Rejects what this
  // implementation does not do (rope_scaling, hidden_act other than silu, pretraining_tp > 1).
  static LlamaConfig from_hf(const io::HfConfig& cfg);
};

class RMSNormImpl : public torch::nn::Module {
 public:
  RMSNormImpl(int64_t dim, double eps);
  torch::Tensor forward(const torch::Tensor& x);
  torch::Tensor weight;
  double eps;
};
TORCH_MODULE(RMSNorm);

class LlamaAttentionImpl : public torch::nn::Module {
 public:
  explicit LlamaAttentionImpl(const LlamaConfig& c);
  // x [B, T, C]. mask: additive float mask broadcastable to [B, 1, T, S] or undefined (no mask).
  // With a cache (reserved for T more positions by the model) the new keys/values of layer
  // `layer` go to [length, length+T) and attention covers [0, length+T); without, the T new ones.
  torch::Tensor forward(const torch::Tensor& x, const RopeCosSin& rope, const AttentionMask& mask, KVCache* cache,
                        int64_t layer);
  torch::nn::Linear q_proj{nullptr}, k_proj{nullptr}, v_proj{nullptr}, o_proj{nullptr};
  int64_t heads, kv_heads, head_dim;
  double scale;
};
TORCH_MODULE(LlamaAttention);

class LlamaMLPImpl : public torch::nn::Module {
 public:
  explicit LlamaMLPImpl(const LlamaConfig& c);
  torch::Tensor forward(const torch::Tensor& x);
  torch::nn::Linear gate_proj{nullptr}, up_proj{nullptr}, down_proj{nullptr};
};
TORCH_MODULE(LlamaMLP);

class LlamaDecoderLayerImpl : public torch::nn::Module {
 public:
  explicit LlamaDecoderLayerImpl(const LlamaConfig& c);
  torch::Tensor forward(const torch::Tensor& x, const RopeCosSin& rope, const AttentionMask& mask, KVCache* cache,
                        int64_t layer);
  LlamaAttention self_attn{nullptr};
  LlamaMLP mlp{nullptr};
  RMSNorm input_layernorm{nullptr}, post_attention_layernorm{nullptr};
};
TORCH_MODULE(LlamaDecoderLayer);

// Additive attention mask (0 = attend, lowest float = masked, as HF) of shape [B or 1, 1, T, past+T]:
// causal over absolute positions, and key j masked where attention_mask[b, j] == 0.
// attention_mask: undefined or [B, past+T] (1 = real token). Returns an undefined tensor when
// nothing is masked (T == 1 without padding), so decode steps skip the add.
torch::Tensor causal_mask(int64_t T, int64_t past, const torch::Tensor& attention_mask,
                          const torch::TensorOptions& opts);

class LlamaModelImpl : public torch::nn::Module {
 public:
  explicit LlamaModelImpl(const LlamaConfig& c);
  // In the compute dtype (the norm's): the table may be narrower (bf16 under --dtype int8).
  torch::Tensor embed(const torch::Tensor& ids) { return embed_rows(embed_tokens, ids, norm->weight.scalar_type()); }
  // inputs_embeds [B, T, C] -> last_hidden_state (after the final norm) [B, T, C].
  // cache: when given, positions continue from cache->length and cache->length advances by T.
  // position_ids: undefined = arange(past, past+T); else int64 [T] or [B, T].
  // attention_mask: undefined (no padding) or [B, past+T] with 1 on real tokens.
  torch::Tensor forward(const torch::Tensor& inputs_embeds, KVCache* cache = nullptr,
                        const torch::Tensor& position_ids = {}, const torch::Tensor& attention_mask = {});
  KVCache make_cache(int64_t batch, int64_t capacity) const;

  LlamaConfig cfg;
  torch::nn::Embedding embed_tokens{nullptr};
  torch::nn::ModuleList layers;
  RMSNorm norm{nullptr};
  torch::Tensor inv_freq;  // not a registered buffer (HF: persistent=False)
  std::vector<LlamaDecoderLayer> layer_ptrs;
  LayerRunner* layer_runner = nullptr;  // training under fsdp (layer_runner.h); used without a cache
  // Training with Ulysses sequence parallelism (sequence_parallel.h), without a cache: the layers
  // run on this process's rows, the output is the whole sequence.
  SequenceParallel* sequence_parallel = nullptr;

 private:
  torch::Tensor forward_rows(const torch::Tensor& inputs_embeds, const torch::Tensor& pos,
                             const torch::Tensor& attention_mask);
};
TORCH_MODULE(LlamaModel);

class LlamaForCausalLMImpl : public torch::nn::Module {
 public:
  explicit LlamaForCausalLMImpl(const LlamaConfig& c);
  // hidden [.., C] -> logits [.., vocab]; with tie_word_embeddings the embedding matrix is used.
  torch::Tensor logits(const torch::Tensor& hidden) {
    return lm_head ? linear_rows(lm_head, hidden) : linear_rows(hidden, model->embed_tokens->weight, {}, {});
  }
  LlamaConfig cfg;
  LlamaModel model{nullptr};
  torch::nn::Linear lm_head{nullptr};  // null (not registered) when tie_word_embeddings
};
TORCH_MODULE(LlamaForCausalLM);

}  // namespace omni::nn
