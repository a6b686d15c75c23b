// The seam between a decoder's layer loop and sharded training. A decoder runs layer i as
// `run_layer(runner, i, h, fn)`: without a runner (inference, single-process or ddp training) that
// is fn(h); under fsdp the trainer's runner gathers the layer's sharded parameters around the call
// and, in backward, gathers them again and recomputes the layer (dist/fsdp.h).
//
// fn must be a function of h and the layer's parameters alone, and may run again after the
// decoder returned: capture by value (KeptMask keeps a packed layout alive for it).
#pragma once
#include <functional>
#include <memory>

#include "omni/nn/attention.h"

namespace omni::nn {

using LayerFn = std::function<torch::Tensor(const torch::Tensor&)>;

class LayerRunner {
 public:
  virtual ~LayerRunner() = default;
  virtual torch::Tensor run(int64_t layer, const torch::Tensor& h, const LayerFn& fn) = 0;
};

inline torch::Tensor run_layer(LayerRunner* runner, int64_t layer, const torch::Tensor& h, const LayerFn& fn) {
  return runner ? runner->run(layer, h, fn) : fn(h);
}

// An attention mask a layer closure can hold: the dense mask shared, a packed layout copied.
class KeptMask {
 public:
  explicit KeptMask(const AttentionMask& m)
      : dense_(m.dense),
        layout_(m.layout ? std::make_shared<const PackedLayout>(*m.layout) : nullptr),
        sequence_parallel_(m.sequence_parallel) {}
  AttentionMask get() const {
    AttentionMask m = layout_ ? AttentionMask(layout_.get()) : AttentionMask(dense_);
    m.sequence_parallel = sequence_parallel_;
    return m;
  }

 private:
  torch::Tensor dense_;
  std::shared_ptr<const PackedLayout> layout_;
  SequenceParallel* sequence_parallel_ = nullptr;
};

}  // namespace omni::nn
