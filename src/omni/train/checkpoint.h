// Training checkpoints: output_dir/checkpoints/global_step_N/ holds
//   model.safetensors      the trainable parameters (frozen ones come from model.model_path)
//   optimizer.pt           libtorch's AdamW state
//   rng.safetensors        the run's generator state
//   trainer_state.json     step, data position, skipped samples
//   config.yaml            the resolved config of the run that wrote it
//   hf_ckpt/               (train.save_hf_weights) a model folder omni infer loads
//   COMPLETE               written last
// Everything is written under global_step_N.tmp and renamed once COMPLETE is in place, so a
// folder without the marker (a crash, a kill -9 mid-save) is never loaded.
#pragma once
#include <ATen/core/Generator.h>
#include <torch/optim/adamw.h>

#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "omni/train/batching.h"

namespace omni::train {

struct TrainerState {
  int64_t global_step = 0;  // optimizer steps done
  DataPosition data;
  int64_t skipped_samples = 0;
};

struct CheckpointContents {
  std::vector<std::pair<std::string, at::Tensor>> parameters;  // trainable, checkpoint names
  torch::optim::Optimizer* optimizer = nullptr;
  at::Generator* generator = nullptr;
  TrainerState state;
  std::string config_yaml;
};

// Writes the checkpoint of step state.global_step; `extra(dir)` may add files (e.g. hf_ckpt/)
// before the marker. Returns the final folder.
std::string save_checkpoint(const std::string& output_dir, const CheckpointContents& c,
                            const std::function<void(const std::string& dir)>& extra = {});

// The newest complete checkpoint under output_dir/checkpoints (none: nullopt).
std::optional<std::string> latest_checkpoint(const std::string& output_dir);

// Restores parameters (by name; every trainable one must be there), optimizer, generator and
// returns the trainer state. Throws omni::Error naming the folder when it is not complete or
// does not match the run.
TrainerState load_checkpoint(const std::string& dir, const CheckpointContents& into);

// Keeps the newest `limit` complete checkpoints (limit 0 = all); removes stale .tmp folders.
void prune_checkpoints(const std::string& output_dir, int64_t limit);

}  // namespace omni::train
