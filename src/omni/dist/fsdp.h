// Sharded data parallel with FSDP / ZeRO-3 semantics on c10d (train.data_parallel_mode fsdp).
//
// Every trainable parameter is flattened, zero-padded to a multiple of the world size N and split:
// a process keeps 1/N of it (its shard), the gradient of that shard and, through the optimizer
// that steps the shards, 1/N of the AdamW moments. Frozen parameters stay whole on every process.
//
//   wrapping units  the family's decoder layers (Trainable::layer_units). A layer's parameters are
//                   all-gathered just before its forward and freed after it; the backward gathers
//                   them again, recomputes the layer (activation checkpointing: only the layer's
//                   input is kept) and reduce-scatters its gradients to the shards at once.
//   root            every other trainable parameter (embeddings, heads, the ViT, connectors):
//                   gathered once per step (begin_step) and reduce-scattered at end_step.
//
// Collectives must pair up across processes, so every process runs the same sequence of passes:
// a pass is one decoder forward and its backward (each unit exactly once each way, the backward
// reached through anchor()); a process with fewer passes in a step runs null_pass() for the rest.
#pragma once
#include <functional>
#include <string>
#include <utility>
#include <vector>

#include "omni/nn/layer_runner.h"

namespace omni::dist {

class ProcessGroup;

// Process `rank`'s part of `whole` split over `world` processes: flattened, zero-padded to
// world * shard elements, elements [rank * shard, (rank + 1) * shard). A view where no padding is
// needed.
at::Tensor shard_slice(const at::Tensor& whole, int64_t shard, int rank, int world);

class ShardedParameters final : public nn::LayerRunner {
 public:
  struct Param {
    std::string name;
    at::Tensor full;  // the model's tensor: its data while gathered, empty otherwise
    std::vector<int64_t> shape;
    at::TensorOptions options;     // the model's (the compute dtype)
    int64_t numel = 0, shard = 0;  // shard = ceil(numel / N)
    at::Tensor local;              // [shard] in the master dtype, a leaf requiring grad: what the optimizer steps
    at::Tensor grad;               // [shard], summed over the step's passes
    bool used = false;             // this process computed a gradient for it this step
  };
  // `params`: the trainable parameters (every process the same list, with the same values);
  // `unit_prefixes`: the wrapping units, in forward order; `master`: the shards' dtype (fp32
  // master weights under bf16 compute: gathered parameters are cast to the model's dtype, gradients
  // summed in the master dtype). Frees the model's copies, each right after its shard is taken,
  // pages included (so a heap that keeps freed blocks does not keep them resident). `fill`, if
  // given, is called on each parameter just before that: a model loaded with io::DeferWeights
  // reads it there, so a process holds one whole parameter at a time, never the whole model.
  ShardedParameters(ProcessGroup& group, const std::vector<std::pair<std::string, at::Tensor>>& params,
                    const std::vector<std::string>& unit_prefixes, c10::ScalarType master,
                    const std::function<void(const at::Tensor&)>& fill = nullptr);
  ~ShardedParameters() override;

  std::vector<Param>& params() { return params_; }
  std::vector<at::Tensor> local_shards() const;

  void begin_step();                 // gathers the root parameters
  at::Tensor anchor();               // 0 * every unit output of this pass: links them all to the loss
  void end_pass();                   // checks each unit ran forward and backward once
  void null_pass();                  // a pass's collectives with nothing to compute
  void end_step();                   // the shards' gradients (none where no process had one)

  at::Tensor run(int64_t layer, const at::Tensor& h, const nn::LayerFn& fn) override;
  // The backward of one unit call (called by its autograd node): returns the input's gradient.
  at::Tensor backward_unit(int64_t layer, const at::Tensor& input, bool input_grad, const nn::LayerFn& fn,
                           const at::Tensor& grad_output);

 private:
  void gather(const std::vector<size_t>& which);
  void release(const std::vector<size_t>& which);
  void reduce(const std::vector<size_t>& which, const std::vector<at::Tensor>& whole_grads);

  ProcessGroup& group_;
  std::vector<Param> params_;
  std::vector<std::vector<size_t>> units_;  // parameter indexes of each unit
  std::vector<int64_t> sharded_units_;      // the units with trainable parameters, in order
  std::vector<size_t> root_;
  int64_t next_forward_ = 0, backwards_ = 0;  // this pass's progress
  std::vector<at::Tensor> outputs_;           // this pass's unit outputs
};

}  // namespace omni::dist
