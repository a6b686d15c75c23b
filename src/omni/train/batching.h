// Which samples each optimizer step trains on: a deterministic shuffle per epoch (seed, epoch),
// then global batches of `global_batch_size` samples cut into micro-batches of
// `micro_batch_size` samples, or, with dyn_bsz, micro-batches filled with consecutive samples up
// to a token budget (max_seq_len x micro_batch_size), global/micro of them per step. A batch
// never spans two epochs. The position (epoch, cursor) is all a checkpoint needs to resume.
// torch-free.
#pragma once
#include <cstdint>
#include <vector>

#include "omni/train/config.h"

namespace omni::train {

// The permutation of [0, n) for `epoch` (Fisher-Yates on mt19937_64, identical on every platform).
std::vector<int64_t> epoch_order(int64_t n, uint64_t seed, int64_t epoch);

struct DataPosition {
  int64_t epoch = 0;
  int64_t cursor = 0;  // samples of this epoch's order already consumed
};

class BatchPlanner {
 public:
  // lengths[i]: sample i's sequence length (for dyn_bsz).
  BatchPlanner(const Config& cfg, std::vector<int64_t> lengths);

  // The micro-batches (sample indices) of the next optimizer step; advances the position.
  std::vector<std::vector<int64_t>> next_step();
  const DataPosition& position() const { return pos_; }
  void seek(const DataPosition& p);
  // Steps one epoch takes (the last batch may be partial).
  int64_t steps_per_epoch() const { return steps_per_epoch_; }

 private:
  std::vector<int64_t> lengths_;
  uint64_t seed_;
  int64_t micro_, global_, budget_;
  bool dyn_;
  DataPosition pos_;
  std::vector<int64_t> order_;
  int64_t steps_per_epoch_ = 0;
  void load_epoch(int64_t e);
};

}  // namespace omni::train
