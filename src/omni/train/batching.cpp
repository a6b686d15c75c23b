#include "omni/train/batching.h"

#include <random>

#include "omni/core/error.h"

namespace omni::train {

std::vector<int64_t> epoch_order(int64_t n, uint64_t seed, int64_t epoch) {
  std::vector<int64_t> order(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) order[static_cast<size_t>(i)] = i;
  std::mt19937_64 rng(seed * 0x9E3779B97F4A7C15ull + static_cast<uint64_t>(epoch) + 1);
  for (int64_t i = n - 1; i > 0; --i) {
    const int64_t j = static_cast<int64_t>(rng() % static_cast<uint64_t>(i + 1));
    std::swap(order[static_cast<size_t>(i)], order[static_cast<size_t>(j)]);
  }
  return order;
}

BatchPlanner::BatchPlanner(const Config& cfg, std::vector<int64_t> lengths)
    : lengths_(std::move(lengths)),
      seed_(static_cast<uint64_t>(cfg.train.seed)),
      micro_(cfg.train.micro_batch_size),
      global_(cfg.train.global_batch_size > 0 ? cfg.train.global_batch_size : cfg.train.micro_batch_size),
      budget_(cfg.data.max_seq_len * cfg.train.micro_batch_size),
      dyn_(cfg.train.dyn_bsz) {
  if (lengths_.empty()) throw Error("data.train_path", "no training samples");
  load_epoch(0);
  // Count one epoch's steps by planning it.
  const DataPosition start = pos_;
  while (pos_.epoch == 0) {
    next_step();
    ++steps_per_epoch_;
  }
  seek(start);
}

void BatchPlanner::load_epoch(int64_t e) {
  pos_ = {e, 0};
  order_ = epoch_order(static_cast<int64_t>(lengths_.size()), seed_, e);
}

void BatchPlanner::seek(const DataPosition& p) {
  if (p.cursor < 0 || p.cursor > static_cast<int64_t>(lengths_.size()) || p.epoch < 0)
    throw Error("data position", "out of range for this data set (was the data changed since the checkpoint?)");
  load_epoch(p.epoch);
  pos_.cursor = p.cursor;
}

std::vector<std::vector<int64_t>> BatchPlanner::next_step() {
  const int64_t n = static_cast<int64_t>(order_.size());
  if (pos_.cursor >= n) load_epoch(pos_.epoch + 1);
  std::vector<std::vector<int64_t>> micro_batches;
  if (!dyn_) {
    const int64_t end = std::min(n, pos_.cursor + global_);
    for (int64_t i = pos_.cursor; i < end; i += micro_) {
      std::vector<int64_t> mb;
      for (int64_t k = i; k < std::min(end, i + micro_); ++k) mb.push_back(order_[static_cast<size_t>(k)]);
      micro_batches.push_back(std::move(mb));
    }
    pos_.cursor = end;
  } else {
    const int64_t steps = std::max<int64_t>(1, global_ / micro_);  // accumulation steps
    for (int64_t s = 0; s < steps && pos_.cursor < n; ++s) {
      std::vector<int64_t> mb;
      int64_t tokens = 0;
      while (pos_.cursor < n) {
        const int64_t idx = order_[static_cast<size_t>(pos_.cursor)];
        if (!mb.empty() && tokens + lengths_[static_cast<size_t>(idx)] > budget_) break;
        mb.push_back(idx);
        tokens += lengths_[static_cast<size_t>(idx)];
        ++pos_.cursor;
      }
      micro_batches.push_back(std::move(mb));
    }
  }
  if (pos_.cursor >= n) load_epoch(pos_.epoch + 1);
  return micro_batches;
}

}  // namespace omni::train
