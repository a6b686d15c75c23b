// BAGEL's Qwen2 Mixture-of-Transformers decoder (ByteDance-Seed/Bagel modeling/bagel/qwen2_navit.py:
// Qwen2MoTDecoderLayer, PackedAttentionMoT, Qwen2Model, Qwen2ForCausalLM), over packed sequences.
//
// Every per-token weight has a `_moe_gen` twin. Tokens are routed by type, not by a learned router:
// understanding rows (text, markers, ViT patches) use the plain weights, generation rows (VAE latent
// tokens) the `_moe_gen` ones; attention is ONE softmax over all rows. Module names mirror the
// checkpoint: model.embed_tokens, model.layers.N.{self_attn.{q,k,v,o}_proj[_moe_gen],
// self_attn.{q,k}_norm[_moe_gen], mlp, mlp_moe_gen, input_layernorm[_moe_gen],
// post_attention_layernorm[_moe_gen]}, model.norm, model.norm_moe_gen, lm_head.
//
// Numerics (float32 evaluation of the official formulas): q/k/v with bias, o without; QK-norm =
// RMSNorm over each head vector (one [head_dim] weight shared by all heads) BEFORE RoPE; RoPE is
// HF's default rotate-half on the packed position ids; softmax in float32; GQA query head h uses
// kv head h / (H / kvH). The K/V cache stores keys after QK-norm and RoPE.
#pragma once
#include <torch/torch.h>

#include <memory>
#include <string>
#include <vector>

#include "omni/io/hf_config.h"
#include "omni/nn/attention.h"
#include "omni/nn/llama.h"

namespace omni::nn {

struct Qwen2MoTConfig {
  LlamaConfig llm;      // qkv_bias is always true for Qwen2
  bool qk_norm = true;  // BAGEL's loaders force it on
  // Qwen2 config.json (llm_config.json). qk_norm and tie_word_embeddings are the loader's (BAGEL
  // forces qk_norm=True, tie_word_embeddings=False), not the file's.
  static Qwen2MoTConfig from_hf(const io::HfConfig& cfg, bool qk_norm = true);
};

// Which rows of a packed block go to which expert. `gen` empty = every row is understanding.
struct TokenRoute {
  torch::Tensor und, gen;  // int64 row indexes (disjoint, covering [0, T))
  bool all_und() const { return !gen.defined() || gen.numel() == 0; }
  static TokenRoute understanding() { return {}; }
  // Rows [begin, end) are generation rows, the rest understanding (an image block: marker,
  // latent tokens, marker).
  static TokenRoute gen_range(int64_t T, int64_t begin, int64_t end);
  // From a bool mask [T] (true = generation row).
  static TokenRoute from_gen_mask(const torch::Tensor& is_gen);
  // The same route with its index tensors on `device` (no copy where they already are).
  TokenRoute on(const torch::Device& device) const;
  // The route of rows [begin, end), renumbered from 0; rows past the sequence (sequence-parallel
  // padding) go to understanding.
  TokenRoute rows(int64_t begin, int64_t end) const;
};

// One inference context of the official inferencer (gen / cfg_text / cfg_img: its kv_lens, ropes
// and NaiveCache) is a KVCache of batch 1 (kv_cache.h): `length` cached rows, `rope` the next RoPE
// position, fork() the official deepcopy (copy-on-write).
using KVContext = KVCache;

class MoTAttentionImpl : public torch::nn::Module {
 public:
  explicit MoTAttentionImpl(const Qwen2MoTConfig& c);
  // x [T, C] (already input-normed, routed). Returns [T, C]. The
  // attention covers the cache's rows (layer `layer`) plus the block; with `update` the block's
  // keys/values are written into the cache (reserved by the model) instead of concatenated.
  torch::Tensor forward(const torch::Tensor& x, const RopeCosSin& rope, const TokenRoute& route, KVCache* cache,
                        int64_t layer, bool update, bool causal, const AttentionMask& mask);
  torch::nn::Linear q_proj{nullptr}, k_proj{nullptr}, v_proj{nullptr}, o_proj{nullptr};
  torch::nn::Linear q_proj_moe_gen{nullptr}, k_proj_moe_gen{nullptr}, v_proj_moe_gen{nullptr},
      o_proj_moe_gen{nullptr};
  RMSNorm q_norm{nullptr}, k_norm{nullptr}, q_norm_moe_gen{nullptr}, k_norm_moe_gen{nullptr};
  int64_t heads, kv_heads, head_dim;
  double scale;
  bool freeze_und = false;  // MoTModelImpl::set_freeze_und
};
TORCH_MODULE(MoTAttention);

class MoTDecoderLayerImpl : public torch::nn::Module {
 public:
  explicit MoTDecoderLayerImpl(const Qwen2MoTConfig& c);
  torch::Tensor forward(const torch::Tensor& x, const RopeCosSin& rope, const TokenRoute& route, KVCache* cache,
                        int64_t layer, bool update, bool causal, const AttentionMask& mask);
  MoTAttention self_attn{nullptr};
  LlamaMLP mlp{nullptr}, mlp_moe_gen{nullptr};
  RMSNorm input_layernorm{nullptr}, input_layernorm_moe_gen{nullptr};
  RMSNorm post_attention_layernorm{nullptr}, post_attention_layernorm_moe_gen{nullptr};
  bool freeze_und = false;
};
TORCH_MODULE(MoTDecoderLayer);

class MoTModelImpl : public torch::nn::Module {
 public:
  explicit MoTModelImpl(const Qwen2MoTConfig& c);
  // In the compute dtype (the norm's): the table may be narrower (bf16 under --dtype int8).
  torch::Tensor embed(const torch::Tensor& ids) { return embed_rows(embed_tokens, ids, norm->weight.scalar_type()); }
  // The official forward_inference for one sequence: x [T, C] packed query rows at RoPE positions
  // `positions` [T], attending to ctx's cached rows plus the block (causal or full). With
  // `update`, the block's K/V are appended to ctx (ctx.length += T; ctx.rope is the caller's).
  // Returns the final-normed hidden states [T, C] (routed norm / norm_moe_gen).
  torch::Tensor forward_inference(const torch::Tensor& x, const torch::Tensor& positions, KVContext& ctx,
                                  const TokenRoute& route, bool causal, bool update);
  // Training forward over a whole packed sequence: x [T, C], positions [T], and either an
  // additive mask [T, T] or the packed layout (attention split by split, memory linear in T).
  torch::Tensor forward_train(const torch::Tensor& x, const torch::Tensor& positions, const TokenRoute& route,
                              const AttentionMask& mask);
  KVContext make_context() const;
  // The official freeze_und (qwen2_navit.py): the understanding rows are detached where the
  // official code detaches them (the block input, V, the normed Q and K, the attention and MLP
  // outputs, the final norm), so only the generation expert and what feeds it learn; the values
  // are unchanged.
  void set_freeze_und(bool on);

  Qwen2MoTConfig cfg;
  bool freeze_und = false;
  torch::nn::Embedding embed_tokens{nullptr};
  torch::nn::ModuleList layers;
  std::vector<MoTDecoderLayer> layer_ptrs;
  LayerRunner* layer_runner = nullptr;  // training under fsdp (layer_runner.h): forward_train
  // forward_train with Ulysses sequence parallelism (sequence_parallel.h; needs a packed layout):
  // the layers run on this process's rows, the output is the whole sequence.
  SequenceParallel* sequence_parallel = nullptr;
  RMSNorm norm{nullptr}, norm_moe_gen{nullptr};
  torch::Tensor inv_freq;  // not registered (HF: persistent=False)
};
TORCH_MODULE(MoTModel);

class MoTForCausalLMImpl : public torch::nn::Module {
 public:
  explicit MoTForCausalLMImpl(const Qwen2MoTConfig& c);
  torch::Tensor logits(const torch::Tensor& hidden);
  Qwen2MoTConfig cfg;
  MoTModel model{nullptr};
  torch::nn::Linear lm_head{nullptr};
};
TORCH_MODULE(MoTForCausalLM);

// Applies `und_fn` to the understanding rows and `gen_fn` to the generation rows of x [T, ...] and
// scatters the results back into row order (== the official index assignments).
template <class FU, class FG>
torch::Tensor route_rows(const torch::Tensor& x, const TokenRoute& r, FU&& und_fn, FG&& gen_fn) {
  if (r.all_und()) return und_fn(x);
  torch::Tensor yu = r.und.numel() ? und_fn(x.index_select(0, r.und)) : torch::Tensor();
  torch::Tensor yg = gen_fn(x.index_select(0, r.gen));
  auto sizes = yg.sizes().vec();
  sizes[0] = x.size(0);
  auto out = torch::zeros(sizes, yg.options());
  if (yu.defined()) out = out.index_copy(0, r.und, yu);
  return out.index_copy(0, r.gen, yg);
}

}  // namespace omni::nn
