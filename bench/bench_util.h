// Helpers shared by the benches (timing, parameter counts, conv FLOP counts, number formatting).
#pragma once
#include <sys/mman.h>
#include <torch/torch.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <functional>
#include <string>
#include <utility>
#include <vector>

#include "omni/core/memory.h"
#include "omni/nn/vq.h"

namespace omni::bench {

using clk = std::chrono::steady_clock;

inline double secs(clk::time_point t) { return std::chrono::duration<double>(clk::now() - t).count(); }

inline int64_t numel_of(torch::nn::Module& m) {
  int64_t n = 0;
  for (const auto& p : m.parameters()) n += p.numel();
  return n;
}

// Bytes of the parameters as stored (an int8-quantized Linear counts 1 byte per weight).
inline int64_t bytes_of(torch::nn::Module& m) {
  int64_t n = 0;
  for (const auto& p : m.parameters()) n += p.numel() * static_cast<int64_t>(p.element_size());
  return n;
}

// Every CPU parameter and buffer of 4 MiB or more moved onto fresh memory under 2 MiB pages, as the
// checkpoint loader writes the CLI's weights (omni/core/memory.h prefer_huge_pages): the benches
// build their weights with torch's init, on whatever pages the heap gives, and the one/two-row
// loops stream 4 KiB pages slower. One tensor at a time, its old storage handed back at once, so
// the peak stays the model plus one tensor.
inline void move_weights_to_huge_pages(torch::nn::Module& m) {
  torch::NoGradGuard ng;
  auto move = [](torch::Tensor& t) {
    if (!t.defined() || !t.device().is_cpu() || t.nbytes() < (size_t{4} << 20)) return;
    auto fresh = torch::empty_strided(t.sizes(), t.strides(), t.options());
    omni::prefer_huge_pages(fresh.data_ptr(), fresh.nbytes());
    fresh.copy_(t);
    t.set_data(fresh);
    omni::return_free_memory_to_os();
  };
  for (auto& p : m.parameters()) move(p);
  for (auto& b : m.buffers()) move(b);
}

inline std::string fmt(const char* f, double v) {
  char b[64];
  std::snprintf(b, sizeof b, f, v);
  return b;
}

// Multiply-adds x 2 of a conv producing an out_h x out_w map.
inline double conv_flops(const torch::nn::Conv2d& c, int64_t out_h, int64_t out_w) {
  return 2.0 * static_cast<double>(c->weight.numel()) * out_h * out_w;
}
// The VQ / FLUX conv blocks at an hw x hw map.
inline double resblock_flops(const nn::VQResnetBlock& r, int64_t hw) {
  double f = conv_flops(r->conv1, hw, hw) + conv_flops(r->conv2, hw, hw);
  if (r->nin_shortcut) f += conv_flops(r->nin_shortcut, hw, hw);
  return f;
}
inline double attnblock_flops(const nn::VQAttnBlock& a, int64_t hw) {
  const double n = static_cast<double>(hw) * hw, c = static_cast<double>(a->q->weight.size(0));
  return conv_flops(a->q, hw, hw) + conv_flops(a->k, hw, hw) + conv_flops(a->v, hw, hw) +
         conv_flops(a->proj_out, hw, hw) + 2 * 2.0 * n * n * c;
}

// The square GEMM rate (in the dtype and on the device of `o`) sampled between the runs of a
// FLOP-bound stage. The cores of the VM these benches run on are shared with other jobs, whose load
// moves the same work by 5-10% from one minute to the next (a Janus tower: 1.09 s, then 1.16-1.18 s
// half an hour later, standalone and in the bench alike), so a bound measured minutes before a stage
// may come from a faster machine than the stage ran on. best() is the best rate seen between the
// stage's runs, the same minutes; the benches print the stage's ratio to it beside the table's,
// which stays against the run-wide bound.
class GemmProbe {
 public:
  // The sizes of the run-wide bound: 2048^3 (twice) and, unless quick, 4096^3 (once) per sample.
  GemmProbe(const torch::TensorOptions& o, std::function<void()> sync, bool quick = false) : sync_(std::move(sync)) {
    for (int64_t n : {int64_t{2048}, int64_t{4096}})
      if (!(quick && n == 4096))
        sizes_.push_back({torch::randn({n, n}, o), torch::randn({n, n}, o), torch::empty({n, n}, o), n == 2048 ? 2 : 1});
  }
  void sample() {
    for (auto& z : sizes_)
      for (int r = 0; r < z.reps; ++r) {
        auto t = clk::now();
        torch::mm_out(z.c, z.a, z.b);
        sync_();
        const double n = static_cast<double>(z.a.size(0));
        best_ = std::max(best_, 2.0 * n * n * n / secs(t));
      }
  }
  double best() const { return best_; }
  void reset() { best_ = 0; }

 private:
  struct Size {
    torch::Tensor a, b, c;
    int reps;
  };
  std::vector<Size> sizes_;
  std::function<void()> sync_;
  double best_ = 0;
};

// The memory-copy rate sampled around the runs of a bandwidth-bound stage, as GemmProbe samples
// the GEMM rate: a 128 MiB fp32 copy_ (4x the L3 of the machines these benches ran on, and small
// beside the model), best of three a sample. On the CPU its two buffers are mapped for the sample
// and unmapped after it, outside the heap: the stage's own freed blocks stay where the next run
// reuses them. (It used to hand its buffers back with malloc_trim, which returned the stage's
// blocks too, so every timed run after a sample paid its page faults again: a bf16 Janus-1B
// prefill of 628 tokens faulted 44-47k pages, 0.25-0.34 s of system time, in every run, and took
// 3.13-3.20 s a run against 2.80-2.85 s with the stage's blocks kept.) Its rate is not
// the 1 GiB copy's, so the benches use it as a ratio: the run-wide copy rate x (the best sample
// around the stage / the best of two taken with the run-wide bound).
class CopyProbe {
 public:
  CopyProbe(const torch::TensorOptions& o, std::function<void()> sync)
      : opts_(o.dtype(torch::kFloat32)), sync_(std::move(sync)) {}
  double sample() {
    const int64_t n = int64_t{1} << 25;  // 128 MiB of fp32
    const size_t bytes = static_cast<size_t>(n) * sizeof(float);
    double rate = 0;
    void* mapped[2] = {nullptr, nullptr};
    if (opts_.device().is_cpu())
      for (auto& m : mapped) {
        m = mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (m == MAP_FAILED) m = nullptr;
      }
    {
      auto buffer = [&](void* m) { return m ? torch::from_blob(m, {n}, opts_) : torch::empty({n}, opts_); };
      auto a = buffer(mapped[0]).fill_(1), b = buffer(mapped[1]);
      b.copy_(a);
      for (int r = 0; r < 3; ++r) {
        sync_();
        auto t = clk::now();
        b.copy_(a);
        sync_();
        rate = std::max(rate, 2.0 * n * 4 / secs(t));
      }
    }
    for (void* m : mapped)
      if (m) munmap(m, bytes);
    best_ = std::max(best_, rate);
    return rate;
  }
  double best() const { return best_; }
  void reset() { best_ = 0; }

 private:
  torch::TensorOptions opts_;
  std::function<void()> sync_;
  double best_ = 0;
};

// A bandwidth-bound stage: the bytes a step streams, its seconds a step, and the copy rate of its
// own minutes (CopyProbe, scaled to the run-wide copy rate). fp32_bytes: what the same step streams
// with fp32 weights and cache, where the run's dtype is narrower (0: not given).
struct CopyProbedStage {
  std::string stage;
  double bytes = 0, seconds = 0, copy_bps = 0, fp32_bytes = 0;
};

// With fp32_bytes, two more columns: the step against the fp32 bandwidth bound (its time / ours:
// the "1.5x the fp32 bound" for bf16), run-wide and at the copy around its runs.
inline void print_copy_probed_table(const std::vector<CopyProbedStage>& stages, double run_copy_bps) {
  bool narrow = false;
  for (const auto& p : stages) narrow = narrow || (p.fp32_bytes > 0 && p.fp32_bytes != p.bytes);
  std::printf("\nThe bandwidth-bound stages against the copy rate sampled around their own runs (bench_util.h\n"
              "CopyProbe: a 128 MiB copy_ before and after them, scaled by its rate beside the run-wide 1 GiB copy):\n\n"
              "| stage | copy around its runs (GB/s) | run-wide copy | ours (GB/s streamed) | ours/bound at the copy around its runs |%s\n"
              "|---|---:|---:|---:|---:|%s\n",
              narrow ? " x the fp32 bound, run-wide / around its runs |" : "", narrow ? "---:|" : "");
  for (const auto& p : stages) {
    std::printf("| %s | %.1f | %.1f | %.1f | %.2f |", p.stage.c_str(), p.copy_bps / 1e9, run_copy_bps / 1e9,
                p.bytes / p.seconds / 1e9, p.bytes / p.copy_bps / p.seconds);
    if (narrow && p.fp32_bytes > 0)
      std::printf(" %.2fx / %.2fx |", p.fp32_bytes / run_copy_bps / p.seconds, p.fp32_bytes / p.copy_bps / p.seconds);
    else if (narrow)
      std::printf(" - |");
    std::printf("\n");
  }
}

// Best of `reps` runs of f, the probe (reset first) sampled before each run and after the last.
template <class F>
double best_of_probed(int reps, GemmProbe& probe, const std::function<void()>& sync, F&& f) {
  probe.reset();
  double best = 1e30;
  for (int r = 0; r < reps; ++r) {
    probe.sample();
    auto t = clk::now();
    f();
    sync();
    best = std::min(best, secs(t));
  }
  probe.sample();
  return best;
}

// A FLOP-bound stage timed with a GemmProbe: its FLOPs, any bytes its bound adds at the copy
// rate, its best time and the best GEMM rate sampled between its runs.
struct ProbedStage {
  std::string stage;
  double flops = 0, bytes = 0, seconds = 0, gemm = 0;
};

// The benches' second table: each probed stage against the GEMM rate of its own minutes, beside
// the run-wide rate the main table uses.
inline void print_probed_table(const std::vector<ProbedStage>& stages, double run_gemm, double copy_bps, bool quick) {
  std::printf("\nThe FLOP-bound stages against the GEMM rate (as the bound's, best of %s) sampled between their own\n"
              "runs, the same minutes of a machine whose cores other jobs share (bench_util.h GemmProbe); a row\n"
              "with bytes in its bound keeps them at the run's copy rate:\n\n"
              "| stage | GEMM between its runs (GFLOP/s) | run-wide GEMM | ours (GFLOP/s) | ours/bound at the GEMM between its runs |\n"
              "|---|---:|---:|---:|---:|\n",
              quick ? "2048^3" : "2048^3 and 4096^3");
  for (const auto& p : stages)
    std::printf("| %s | %.1f | %.1f | %.1f | %.2f |\n", p.stage.c_str(), p.gemm / 1e9, run_gemm / 1e9,
                p.flops / p.seconds / 1e9, (p.flops / p.gemm + p.bytes / copy_bps) / p.seconds);
}

}  // namespace omni::bench
