// Multi-process runs on torch's own distributed engine (c10d): the world from torchrun's
// variables, a TCPStore rendezvous, and a Gloo (CPU) or NCCL (CUDA) process group. Every failure
// (port in use, unreachable master, a peer gone, a timeout) becomes one omni::Error line.
#pragma once
#include <ATen/core/Tensor.h>
#include <c10/core/Device.h>

#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <vector>

namespace omni::dist {

// RANK, WORLD_SIZE, LOCAL_RANK, LOCAL_WORLD_SIZE, MASTER_ADDR, MASTER_PORT (torchrun's names).
struct WorldEnv {
  int rank = 0, world = 1, local_rank = 0, local_world = 1;
  std::string master_addr = "127.0.0.1";
  int master_port = 29500;
  bool distributed() const { return world > 1; }
  // From the environment; a single process when WORLD_SIZE is unset. Throws omni::Error on
  // malformed or inconsistent values.
  static WorldEnv from_env();
};

// The dtype a sum over processes runs in: Gloo in libtorch 1.13 has no bf16 arithmetic, so bf16
// is summed in fp32 (every other dtype as it is).
c10::ScalarType sum_dtype(c10::ScalarType t);

class ProcessGroup {
 public:
  // Rendezvous (rank 0 serves the TCPStore) and the process group. backend: "auto" (gloo on the
  // CPU, nccl on CUDA), "gloo" or "nccl".
  static std::unique_ptr<ProcessGroup> init(const WorldEnv& env, c10::Device device, const std::string& backend,
                                            std::chrono::milliseconds timeout);
  ~ProcessGroup();
  int rank() const { return rank_; }
  int size() const { return size_; }
  // In-place sums over all ranks (one collective for the whole list: flattened per dtype, summed
  // in sum_dtype).
  void all_reduce_sum(std::vector<at::Tensor>& tensors);
  std::vector<double> all_reduce_sum(const std::vector<double>& values);
  std::vector<double> all_reduce_max(const std::vector<double>& values);
  // An in-place sum over all ranks started now and finished by the returned call (which throws
  // omni::Error as all_reduce_sum does): the caller computes meanwhile. `flat` is one contiguous
  // tensor the caller keeps alive and untouched until then.
  std::function<void()> all_reduce_sum_start(at::Tensor& flat);
  // Every rank's `part` (the same size on each), concatenated in rank order: [size() * part.numel()].
  at::Tensor all_gather(const at::Tensor& part);
  // The sum over ranks of `whole` [size() * n], this rank's n elements [rank() * n, (rank() + 1) * n).
  at::Tensor reduce_scatter_sum(const at::Tensor& whole);
  // x [size(), ...] -> y [size(), ...]: x[j] goes to process j, y[j] came from process j.
  at::Tensor all_to_all(const at::Tensor& x);
  // The processes `ranks` (this one among them; ranks[i] becomes rank i) as a group of their own,
  // named `name` (unique per group); every member calls it with the same list, nobody else need.
  std::unique_ptr<ProcessGroup> subgroup(const std::vector<int>& ranks, const std::string& name);
  void barrier();
  // Seconds spent in collectives so far (waiting included), for the metrics.
  double seconds_in_collectives() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
  int rank_ = 0, size_ = 1;
  ProcessGroup() = default;
};

}  // namespace omni::dist
