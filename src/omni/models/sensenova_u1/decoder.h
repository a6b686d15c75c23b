// SenseNova-U1's language model (official neo_unify/modeling_qwen3.py: Qwen3ForCausalLM with the
// NEO-unify changes), names mirroring the checkpoint: language_model.model.{embed_tokens,
// layers.N.{self_attn.{q,k,v,o}_proj[_mot_gen], self_attn.{q,k}_norm[_hw][_mot_gen], mlp[_mot_gen],
// input_layernorm[_mot_gen], post_attention_layernorm[_mot_gen]}, norm, norm_mot_gen},
// language_model.lm_head.
//
// Mixture-of-Transformers: every per-token weight has a `_mot_gen` twin; understanding rows (text,
// input images) take the plain weights, generation rows (noisy image tokens) the twins; both meet
// in one attention. Numerics (float32 evaluation of the official formulas):
//   * QK-norm per half head: the first head_dim/2 values (the t part) by q_norm / k_norm, the
//     second half (h, w) by q_norm_hw / k_norm_hw, each an RMSNorm over head_dim/2;
//   * 3-axis RoPE after the norms: the t half rotated with rope_theta over indexes[0], each
//     quarter of the hw half with rope_theta_hw over indexes[1] (h) and indexes[2] (w), HF
//     rotate-half inside each part; v has neither;
//   * GQA, scale head_dim^-0.5, softmax in float32; the KV cache holds keys after norm and RoPE.
#pragma once
#include <torch/torch.h>

#include "omni/models/sensenova_u1/config.h"
#include "omni/nn/attention.h"
#include "omni/nn/kv_cache.h"
#include "omni/nn/llama.h"
#include "omni/nn/qwen2_mot.h"
#include "omni/nn/rope.h"

namespace omni::sensenova_u1 {

using nn::TokenRoute;

// cos/sin of the three RoPE axes for a block of rows: t [T, head_dim/2], h and w [T, head_dim/4].
struct AxisRope {
  nn::RopeCosSin t, h, w;
};

// What a decoder forward does with the KV cache.
enum class CacheUse {
  None,    // no cache (training: the whole packed sequence at once)
  Append,  // attend over cache + block and keep the block (prefill, text steps)
  Peek,    // attend over cache + block, leave the cache as it was (flow steps: update_cache=False)
};

class Qwen3MoTAttentionImpl : public torch::nn::Module {
 public:
  explicit Qwen3MoTAttentionImpl(const LlmConfig& c);
  // x [T, C] (input-normed, routed) -> [T, C]. With a cache (reserved by the model for T more
  // rows) the block's keys/values go to rows [length, length + T) of layer `layer` and the
  // attention covers [0, length + T).
  torch::Tensor forward(const torch::Tensor& x, const AxisRope& rope, const TokenRoute& route, nn::KVCache* cache,
                        int64_t layer, const nn::AttentionMask& mask);
  torch::nn::Linear q_proj{nullptr}, k_proj{nullptr}, v_proj{nullptr}, o_proj{nullptr};
  torch::nn::Linear q_proj_mot_gen{nullptr}, k_proj_mot_gen{nullptr}, v_proj_mot_gen{nullptr},
      o_proj_mot_gen{nullptr};
  nn::RMSNorm q_norm{nullptr}, q_norm_hw{nullptr}, k_norm{nullptr}, k_norm_hw{nullptr};
  nn::RMSNorm q_norm_mot_gen{nullptr}, q_norm_hw_mot_gen{nullptr}, k_norm_mot_gen{nullptr},
      k_norm_hw_mot_gen{nullptr};
  int64_t heads, kv_heads, head_dim;
  double scale;
};
TORCH_MODULE(Qwen3MoTAttention);

class Qwen3MoTDecoderLayerImpl : public torch::nn::Module {
 public:
  explicit Qwen3MoTDecoderLayerImpl(const LlmConfig& c);
  torch::Tensor forward(const torch::Tensor& x, const AxisRope& rope, const TokenRoute& route, nn::KVCache* cache,
                        int64_t layer, const nn::AttentionMask& mask);
  Qwen3MoTAttention self_attn{nullptr};
  nn::LlamaMLP mlp{nullptr}, mlp_mot_gen{nullptr};
  nn::RMSNorm input_layernorm{nullptr}, input_layernorm_mot_gen{nullptr};
  nn::RMSNorm post_attention_layernorm{nullptr}, post_attention_layernorm_mot_gen{nullptr};
};
TORCH_MODULE(Qwen3MoTDecoderLayer);

class Qwen3MoTModelImpl : public torch::nn::Module {
 public:
  explicit Qwen3MoTModelImpl(const LlmConfig& c);
  // In the compute dtype (the norm's): the table may be narrower (bf16 under --dtype int8).
  torch::Tensor embed(const torch::Tensor& ids) { return nn::embed_rows(embed_tokens, ids, norm->weight.scalar_type()); }
  AxisRope rope(const torch::Tensor& indexes, const torch::Tensor& like) const;  // indexes int64 [3, T]
  // x [T, C] at `indexes` [3, T] -> final-normed hidden [T, C] (norm / norm_mot_gen by route).
  // mask: dense additive [T, S], a packed layout, or none (every row sees every key).
  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& indexes, const TokenRoute& route,
                        nn::KVCache* cache, CacheUse use, const nn::AttentionMask& mask);
  nn::KVCache make_cache() const;

  LlmConfig cfg;
  torch::nn::Embedding embed_tokens{nullptr};
  torch::nn::ModuleList layers;
  std::vector<Qwen3MoTDecoderLayer> layer_ptrs;
  nn::LayerRunner* layer_runner = nullptr;  // training under fsdp (nn/layer_runner.h); used without a cache
  // Training with Ulysses sequence parallelism (nn/sequence_parallel.h; a packed layout, no
  // cache): the layers run on this process's rows, the output is the whole sequence.
  nn::SequenceParallel* sequence_parallel = nullptr;
  nn::RMSNorm norm{nullptr}, norm_mot_gen{nullptr};
  torch::Tensor inv_freq_t, inv_freq_hw;  // not registered (HF: persistent=False)

 private:
  torch::Tensor forward_rows(const torch::Tensor& x, const torch::Tensor& indexes, const TokenRoute& route,
                             const nn::AttentionMask& mask);
};
TORCH_MODULE(Qwen3MoTModel);

class Qwen3MoTForCausalLMImpl : public torch::nn::Module {
 public:
  explicit Qwen3MoTForCausalLMImpl(const LlmConfig& c);
  torch::Tensor logits(const torch::Tensor& hidden);
  Qwen3MoTModel model{nullptr};
  torch::nn::Linear lm_head{nullptr};
};
TORCH_MODULE(Qwen3MoTForCausalLM);

// route_rows with fast paths for the single-branch blocks inference runs (all und / all gen).
template <class FU, class FG>
torch::Tensor routed(const torch::Tensor& x, const TokenRoute& r, FU&& und_fn, FG&& gen_fn) {
  if (r.all_und()) return und_fn(x);
  if (r.und.defined() && r.und.numel() == 0) return gen_fn(x);  // gen covers every row in order
  return nn::route_rows(x, r, std::forward<FU>(und_fn), std::forward<FG>(gen_fn));
}

// Every row a generation row (a flow step's block).
TokenRoute all_gen_route(int64_t T, const torch::Device& device);

}  // namespace omni::sensenova_u1
