// train.ulysses_size (Ulysses sequence parallelism, nn/sequence_parallel.h) through the CLI:
// processes that split every sequence's rows between them, with an all-to-all around attention,
// train what one process trains on the same global batch. Per-step losses agree within 1e-5
// relative (the same sums in another order, matrix products of other shapes) and the final fp32
// weights within 1e-5, for Janus, BAGEL (also with freeze_und) and SenseNova-U1, under fsdp and
// ddp, and with data parallelism around it (4 processes = 2 x 2). AdamW's eps is 1e-3 here: with
// the default 1e-8 it scales a gradient at rounding-noise level (~1e-9, whose sign the summation
// order decides) to a full +-lr step, and the weights could not be compared.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <regex>
#include <sstream>

#include "cli_test_util.h"
#include "omni/io/checkpoint_torch.h"

namespace fs = std::filesystem;
using omni::testing::run;
using omni::testing::tmpdir;

namespace {

const fs::path& source_dir() {
  static const fs::path p = fs::path(OMNI_FIXTURES).parent_path().parent_path();
  return p;
}

int next_port() {
  static int port = 30000 + static_cast<int>(::getpid() % 20000);
  return ++port;
}

std::vector<double> column(const fs::path& metrics, const std::string& key) {
  std::ifstream in(metrics);
  std::vector<double> v;
  const std::regex re("\"" + key + "\":([-+0-9.eE]+)");
  for (std::string line; std::getline(in, line);) {
    std::smatch m;
    if (std::regex_search(line, m, re)) v.push_back(std::stod(m[1]));
  }
  return v;
}

// `omni train CONFIG ARGS` on `nproc` processes (omni launch when more than one), 4 steps of a
// global batch of 2 single-sample micro-batches; returns the output folder.
fs::path train(const std::string& name, const std::string& config, int nproc, const std::string& args) {
  const fs::path out = tmpdir("ulysses") / name;
  fs::remove_all(out);
  const std::string common = (source_dir() / config).string() +
                             " --train.max_steps 4 --train.micro_batch_size 1 --train.global_batch_size 2"
                             " --train.save_steps 0 --train.save_hf_weights true --train.warmup_steps 0 --train.eps 1e-3"
                             " --train.output_dir " + out.string() + " " + args;
  const std::string cmd = nproc == 1 ? "--log warn train " + common
                                     : "--log warn launch --nproc_per_node " + std::to_string(nproc) + " --master_port " +
                                           std::to_string(next_port()) + " -- omni --log debug train " + common;
  const auto r = run(cmd);
  EXPECT_EQ(r.rc, 0) << cmd << "\n" << r.err;
  if (args.find("ulysses_size") != std::string::npos) {  // the rows were split: attention exchanged them
    std::smatch m;
    EXPECT_TRUE(std::regex_search(r.err, m, std::regex("step 4: ([0-9]+) all-to-alls around attention")) &&
                std::stoi(m[1]) > 0)
        << r.err.substr(0, 4000);
  }
  return out;
}

void expect_close(const std::vector<double>& a, const std::vector<double>& b, double rel, const std::string& what) {
  ASSERT_EQ(a.size(), b.size()) << what;
  ASSERT_FALSE(a.empty()) << what;
  for (size_t i = 0; i < a.size(); ++i)
    EXPECT_LE(std::abs(a[i] - b[i]), rel * std::max(std::abs(a[i]), 1e-12)) << what << " at step " << i + 1 << ": " << a[i]
                                                                          << " vs " << b[i];
}

// The trained fp32 parameters of a run's final checkpoint by name: model.safetensors, or the
// flat shards of model.shard-R-of-N.safetensors joined and cut to `shape`.
at::Tensor trained(const fs::path& run, const std::string& name, at::IntArrayRef shape) {
  const fs::path step = run / "checkpoints/global_step_4";
  if (fs::exists(step / "model.safetensors"))
    return omni::io::Checkpoint::open((step / "model.safetensors").string()).get(name);
  std::vector<at::Tensor> parts;
  for (int n = 2; n <= 8 && parts.empty(); ++n)
    for (int r = 0; fs::exists(step / ("model.shard-" + std::to_string(r) + "-of-" + std::to_string(n) + ".safetensors")); ++r)
      parts.push_back(omni::io::Checkpoint::open(
                          (step / ("model.shard-" + std::to_string(r) + "-of-" + std::to_string(n) + ".safetensors")).string())
                          .get(name));
  EXPECT_FALSE(parts.empty()) << "no checkpoint in " << step;
  int64_t numel = 1;
  for (auto d : shape) numel *= d;
  return torch::cat(parts).narrow(0, 0, numel).view(shape);
}

// Every trained parameter of `b` within `tol` of `a`'s (one process, whole), relative to the
// tensor's largest magnitude.
void expect_same_weights(const fs::path& a, const fs::path& b, double tol) {
  const auto ca = omni::io::Checkpoint::open((a / "checkpoints/global_step_4/model.safetensors").string());
  double worst = 0;
  for (const auto& info : ca.tensors()) {
    auto x = ca.get(info.name).to(torch::kFloat64);
    auto y = trained(b, info.name, x.sizes()).to(torch::kFloat64);
    const double scale = std::max(x.abs().max().item<double>(), 1e-12);
    const double diff = (x - y).abs().max().item<double>();
    EXPECT_LE(diff, tol * scale) << info.name;
    worst = std::max(worst, diff / scale);
  }
  EXPECT_GT(ca.tensors().size(), 0u);
  std::printf("largest weight difference: %.2g of the tensor's largest magnitude\n", worst);
}

struct UlyssesCase {
  std::string name, config, args;
};

void same_as_one(const UlyssesCase& c, int nproc, const std::string& sp_args) {
  const auto one = train(c.name + ".1", c.config, 1, c.args);
  const auto many = train(c.name + ".sp", c.config, nproc, c.args + " " + sp_args);
  for (const char* k : {"loss", "ce_loss", "gen_loss"})
    expect_close(column(one / "metrics.jsonl", k), column(many / "metrics.jsonl", k), 1e-5, c.name + " " + k);
  const auto a = column(one / "metrics.jsonl", "loss"), b = column(many / "metrics.jsonl", "loss");
  double worst = 0;
  for (size_t i = 0; i < std::min(a.size(), b.size()); ++i) worst = std::max(worst, std::abs(a[i] - b[i]) / std::abs(a[i]));
  std::printf("largest per-step loss difference: %.2g relative\n", worst);
  EXPECT_EQ(column(one / "metrics.jsonl", "tokens"), column(many / "metrics.jsonl", "tokens")) << c.name;
  expect_same_weights(one, many, 1e-5);
}

class Ulysses : public ::testing::Test {
 protected:
  void SetUp() override { fs::current_path(source_dir()); }  // the example configs' relative paths
};

}  // namespace

TEST_F(Ulysses, JanusFsdpTwoProcessesShareEachSequence) {
  same_as_one({"janus_fsdp", "examples/train/janus_tiny.yaml", ""}, 2, "--train.ulysses_size 2");
}

TEST_F(Ulysses, JanusDdpTwoByTwo) {
  same_as_one({"janus_ddp", "examples/train/janus_tiny.yaml", "--train.data_parallel_mode ddp"}, 4,
              "--train.ulysses_size 2");
}

TEST_F(Ulysses, BagelDdpTwoProcessesShareEachSequence) {
  same_as_one({"bagel_ddp", "examples/train/bagel_tiny.yaml", "--train.data_parallel_mode ddp"}, 2,
              "--train.ulysses_size 2");
}

TEST_F(Ulysses, BagelFreezeUndFsdp) {
  // An understanding sample's rows are all detached after the all-to-alls (freeze_und): each
  // process still runs every layer's all-to-all backward, also inside fsdp's recomputation.
  same_as_one({"bagel_freeze", "examples/train/bagel_tiny.yaml", "--train.freeze_und true"}, 2,
              "--train.ulysses_size 2");
}

TEST_F(Ulysses, SenseNovaU1FsdpTwoProcessesShareEachSequence) {
  same_as_one({"u1_fsdp", "examples/train/u1_tiny.yaml", "--data.cfg_txt_uncond_drop_prob 0.5"}, 2,
              "--train.ulysses_size 2");
}

TEST_F(Ulysses, SizesThatDoNotDivideAreOneErrorLine) {
  auto r = run("--log warn train examples/train/janus_tiny.yaml --train.ulysses_size 2 --train.output_dir " +
               (tmpdir("ulysses") / "one").string());
  EXPECT_NE(r.rc, 0);
  EXPECT_NE(r.err.find("error: train.ulysses_size: 2 does not divide the 1 process of this run"), std::string::npos)
      << r.err;
  // 4 processes in one sequence-parallel group: Janus's 2 key/value heads do not split 4 ways
  r = run("--log warn launch --nproc_per_node 4 --master_port " + std::to_string(next_port()) +
          " -- omni train examples/train/janus_tiny.yaml --train.max_steps 1 --train.ulysses_size 4 --train.output_dir " +
          (tmpdir("ulysses") / "heads").string());
  EXPECT_NE(r.rc, 0);
  EXPECT_NE(r.err.find("train.ulysses_size: 4 does not divide the decoder's 4 attention heads and 2 key/value heads"),
            std::string::npos)
      << r.err;
}
