// Training checkpoints: output_dir/checkpoints/global_step_N/ holds
//   model.safetensors      the trainable parameters (frozen ones come from model.model_path)
//   optimizer.safetensors  AdamW's state per parameter: exp_avg/<name>, exp_avg_sq/<name>, step/<name>
//   trainer_state.json     step, data position, skipped samples, shards
//   config.yaml            the resolved config of the run that wrote it
//   hf_ckpt/               (train.save_hf_weights) a model folder omni infer loads
//   COMPLETE               written last
// A sharded run (fsdp over N processes) writes model.shard-R-of-N.safetensors and
// optimizer.shard-R-of-N.safetensors instead, one pair per process, nothing gathered: each tensor
// flattened, zero-padded to a multiple of N, and process R's 1/N of it under the same names.
// Any run loads either layout at any process count (the loader reassembles each tensor from the
// shards that hold it, one tensor at a time).
// Everything is written under global_step_N.tmp and renamed once COMPLETE is in place, so a
// folder without the marker (a crash, a kill -9 mid-save) is never loaded.
#pragma once
#include <torch/optim/adamw.h>

#include <optional>
#include <sstream>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "omni/train/batching.h"

namespace omni::train {

// The key libtorch's optimizers keep a parameter's state under: the TensorImpl's address printed
// as a string up to libtorch 2.1, the address itself (void*) from 2.2. The key type is read off
// Optimizer::state(), so no version number is involved; a template, so that only the branch of
// this libtorch is instantiated.
using OptimizerKey = std::decay_t<decltype(std::declval<torch::optim::Optimizer&>().state())>::key_type;
template <class K = OptimizerKey>
K optimizer_key(const at::Tensor& p) {
  if constexpr (std::is_same_v<K, std::string>) {
    std::ostringstream os;  // what libtorch's c10::guts::to_string(TensorImpl*) wrote
    os << p.unsafeGetTensorImpl();
    return os.str();
  } else {
    return p.unsafeGetTensorImpl();
  }
}

struct TrainerState {
  int64_t global_step = 0;  // optimizer steps done
  DataPosition data;
  int64_t skipped_samples = 0;
};

// One trained parameter: its checkpoint name and whole shape; `value` is what this process holds
// and the optimizer steps (the whole parameter, or its fsdp shard).
struct CheckpointEntry {
  std::string name;
  std::vector<int64_t> shape;
  at::Tensor value;
};

// How the entries are split over the processes: sharded = each process holds its 1/N part.
struct Sharding {
  int rank = 0, world = 1;
  bool sharded = false;
  std::function<void()> barrier;  // sharded saves: every process reaches each stage together
};

struct CheckpointContents {
  std::vector<CheckpointEntry> parameters;
  torch::optim::AdamW* optimizer = nullptr;  // over the entries' values
  Sharding sharding;
  TrainerState state;
  std::string config_yaml;
};

// Writes the checkpoint of step state.global_step: the one process of an unsharded run, every
// process of a sharded one. `extra(dir)` may add files (e.g. hf_ckpt/) before the marker; in a
// sharded run every process calls it. Returns the final folder.
std::string save_checkpoint(const std::string& output_dir, const CheckpointContents& c,
                            const std::function<void(const std::string& dir)>& extra = {});

// The trained parameters a checkpoint folder holds (complete, or being written once its model
// files are on disk: inside save_checkpoint's `extra`), in c's layout, each reassembled whole from
// its shards when asked for by name (undefined for a name c does not train): an export that never
// holds more than one parameter.
std::function<at::Tensor(const std::string&)> saved_parameters(const std::string& dir, const CheckpointContents& c);

// The newest complete checkpoint under output_dir/checkpoints (none: nullopt).
std::optional<std::string> latest_checkpoint(const std::string& output_dir);

// Restores parameters (by name; every trainable one must be there) and the optimizer's state,
// from either layout at any process count, and returns the trainer state. Throws omni::Error
// naming the folder when it is not complete or does not match the run.
TrainerState load_checkpoint(const std::string& dir, const CheckpointContents& into);

// Keeps the newest `limit` complete checkpoints (limit 0 = all); removes stale .tmp folders.
void prune_checkpoints(const std::string& output_dir, int64_t limit);

}  // namespace omni::train
