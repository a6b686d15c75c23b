// Building a module tree that a strict load then fills completely: its big tensors need no
// initial values. Inside an UninitialisedBuild scope nn::decoder_linear, nn::head_linear and
// nn::embedding_table create their weights with torch::empty — memory never touched until the
// loader writes it — instead of running libtorch's kaiming-uniform / normal init. At Janus-Pro-7B
// size that init is 7.4 B serial random draws, about half of a two-minute load (perf: the
// generator and the Box-Muller sincos/log next to the page clearing). The model loaders
// (JanusModel::load, BagelImpl::load, NeoChatImpl::load) open the scope; `omni init` and the tests
// that build random models do not, so their weights stay initialised.
#pragma once
#include <torch/torch.h>

namespace omni::nn {

class UninitialisedBuild {
 public:
  UninitialisedBuild();
  ~UninitialisedBuild();
  UninitialisedBuild(const UninitialisedBuild&) = delete;
  UninitialisedBuild& operator=(const UninitialisedBuild&) = delete;

 private:
  bool prev_;
};
bool uninitialised_build();  // inside a scope on this thread

// torch::nn::Linear(in, out, bias) in the default dtype, initialised outside a scope, over
// uninitialised storage inside one: what head_linear and nn::tower_linear build outside their
// narrow cases.
torch::nn::Linear default_linear(int64_t in, int64_t out, bool bias);
// torch::nn::Linear(in, out, bias) in the default dtype: an output head (lm_head) or any linear
// that is never int8. Inside an nn::NarrowLinearBuild: uninitialised bf16 (linear.h).
torch::nn::Linear head_linear(int64_t in, int64_t out, bool bias);
// torch::nn::Embedding(n, dim) in the default dtype; inside an nn::NarrowLinearBuild, uninitialised
// bf16, looked up through nn::embed_rows.
torch::nn::Embedding embedding_table(int64_t n, int64_t dim);

// A Linear whose `weight` is uninitialised [out, in] storage of `weight_dtype` (and an
// uninitialised bias): what the three above build inside the scope, and decoder_linear's int8
// weights (kChar: not trainable) and bf16 ones always.
torch::nn::Linear linear_over_empty(int64_t in, int64_t out, bool bias, torch::ScalarType weight_dtype);

}  // namespace omni::nn
