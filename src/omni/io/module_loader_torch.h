// Strict loading of a checkpoint into a torch::nn::Module whose parameter and buffer names are
// the checkpoint's dotted tensor names. Every module parameter/buffer must be in the checkpoint
// with the same shape, and every checkpoint tensor must be used or explicitly ignored.
#pragma once
#include <torch/torch.h>

#include <functional>
#include <map>
#include <string>
#include <vector>

#include "omni/io/checkpoint_torch.h"

namespace omni::io {

struct LoadOptions {
  std::string prefix;  // checkpoint name = prefix + module name (e.g. "language_model.")
  // Checkpoint tensors that exist but are deliberately unused (e.g. Janus' attn_pool.*).
  std::function<bool(const std::string&)> ignore_unused;
  // Restrict the "unexpected tensor" check to names under `prefix` (several modules may share
  // one checkpoint). Default true.
  bool only_check_prefix = true;
};

struct LoadReport {
  size_t tensors = 0;
  uint64_t bytes_read = 0;  // checkpoint bytes copied (as stored)
  size_t ignored = 0;
  double seconds = 0;
  double gb_per_s() const { return seconds > 0 ? bytes_read / seconds / 1e9 : 0; }
};

// Throws omni::Error naming the tensor and the file: missing, unexpected, wrong shape, or a
// dtype that cannot be converted (float <-> integer/bool). Float dtypes convert to the module's;
// a float weight loaded into an int8 linear (nn::decoder_linear under nn::NarrowLinearBuild(Char)) is
// quantized into its weight and `weight_scale`. Each tensor's mapped pages are released once
// copied (Checkpoint::release).
LoadReport load_module(torch::nn::Module& module, const Checkpoint& ckpt, const LoadOptions& opts = {});

// Loading a model a tensor at a time (fsdp training): inside a DeferWeights scope, load_module
// checks every tensor as always (names, shapes, dtypes) but copies no float one into the module;
// `DeferredWeights` remembers where each comes from, and its owner loads them when it needs them.
// The trainer loads each trainable parameter just before taking its shard and drops the rest of
// it (dist/fsdp.h), so no process ever holds the whole model: the model's big tensors are built
// uninitialised (nn::UninitialisedBuild), pages the OS has not handed out yet. Until loaded, a
// deferred tensor holds whatever its memory held: nothing may run the model before then. A tensor
// the model writes in place meanwhile (BAGEL's training sets its sin-cos tables) keeps what was
// written: its load is dropped (the tensor's version counter tells).
class DeferredWeights {
 public:
  size_t pending() const { return entries_.size(); }
  bool is_pending(const torch::Tensor& t) const { return entries_.count(t.unsafeGetTensorImpl()) != 0; }
  // Copies t's checkpoint tensor into t (converted to t's dtype) and releases its mapped pages;
  // a no-op when t is not pending or was written since load_module.
  void load(const torch::Tensor& t);
  void load_all();

 private:
  friend LoadReport load_module(torch::nn::Module&, const Checkpoint&, const LoadOptions&);
  struct Entry {
    torch::Tensor dst;
    size_t checkpoint;
    std::string name;
    int64_t version;  // dst._version() when deferred
  };
  std::vector<Checkpoint> checkpoints_;  // copies: they keep the files mapped
  std::map<const void*, Entry> entries_;  // by the module tensor's TensorImpl
};

// While one lives, load_module on this thread defers its float tensors into `into`.
class DeferWeights {
 public:
  explicit DeferWeights(DeferredWeights& into);
  ~DeferWeights();
  DeferWeights(const DeferWeights&) = delete;
  DeferWeights& operator=(const DeferWeights&) = delete;

 private:
  DeferredWeights* prev_;
};

// Named parameters and buffers, recursively, in registration order.
std::vector<std::pair<std::string, torch::Tensor>> named_state(const torch::nn::Module& module);

// Modules create their parameters in the default dtype: building them directly in the compute
// dtype avoids an fp32 staging copy of the whole model (28 GB for Janus-Pro-7B).
struct DefaultDtypeGuard {
  caffe2::TypeMeta prev;
  explicit DefaultDtypeGuard(torch::ScalarType t) : prev(torch::get_default_dtype()) {
    torch::set_default_dtype(c10::scalarTypeToTypeMeta(t));
  }
  ~DefaultDtypeGuard() { torch::set_default_dtype(prev); }
  DefaultDtypeGuard(const DefaultDtypeGuard&) = delete;
  DefaultDtypeGuard& operator=(const DefaultDtypeGuard&) = delete;
};

}  // namespace omni::io
