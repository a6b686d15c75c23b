// Per-step training metrics: output_dir/metrics.jsonl (one JSON object per optimizer step) and a
// TensorBoard event file (so `tensorboard --logdir output_dir` shows the curves). torch-free.
#pragma once
#include <cstdint>
#include <fstream>
#include <map>
#include <string>
#include <utility>
#include <vector>

namespace omni::train {

struct StepMetrics {
  int64_t step = 0;  // 1-based
  double loss = 0, ce_loss = 0, gen_loss = 0, lr = 0, grad_norm = 0;
  int64_t tokens = 0, ce_tokens = 0, gen_tokens = 0;
  double tokens_per_s = 0, step_time_s = 0;
  double peak_rss_mib = 0;  // the largest of the processes'
  // The largest process's peak RSS before step 1 (loading, sharding, resuming): the same in every
  // row of a run.
  double setup_rss_mib = 0;
  // The largest process's trainable state (its parameters or shards, their gradients and AdamW
  // moments) and the seconds this process spent in collectives this step.
  double state_mib = 0, comm_s = 0;
  std::string to_json() const;
};

// Appends TFRecord-framed tensorflow.Event protos with scalar summaries.
class TensorBoardWriter {
 public:
  explicit TensorBoardWriter(const std::string& dir);
  void scalars(int64_t step, const std::vector<std::pair<std::string, double>>& values);
  const std::string& path() const { return path_; }

 private:
  void record(const std::string& event);
  std::string path_;
  std::ofstream out_;
};

class MetricsLog {
 public:
  // Opens output_dir/metrics.jsonl keeping only the lines of steps <= resumed_step (a resumed
  // run rewrites what came after its checkpoint).
  MetricsLog(const std::string& output_dir, int64_t resumed_step);
  void add(const StepMetrics& m);
  const std::vector<StepMetrics>& history() const { return history_; }

 private:
  std::ofstream jsonl_;
  TensorBoardWriter tb_;
  std::vector<StepMetrics> history_;
};

// CRC-32C (Castagnoli), as TFRecord frames use it (exposed for tests).
uint32_t crc32c(const void* data, size_t n);

}  // namespace omni::train
