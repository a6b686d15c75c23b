// Training checkpoints in both layouts (train/checkpoint.h): a sharded save by two processes
// (threads here, meeting at the save's barriers) loads whole into one process and into three
// shards; a whole save loads into shards; a torn sharded checkpoint is refused.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <filesystem>
#include <thread>

#include "omni/core/error.h"
#include "omni/train/checkpoint.h"
#include "thread_meeting.h"

using namespace omni;
using namespace omni::train;
namespace fs = std::filesystem;

namespace {

// Two parameters whose sizes do not split evenly (15 and 7 elements), with AdamW state after one
// step, as the whole tensors one process would hold.
struct Whole {
  std::vector<std::string> names{"a.weight", "b.bias"};
  std::vector<at::Tensor> params{torch::randn({3, 5}), torch::randn({7})};
  std::vector<at::Tensor> exp_avg{torch::randn({3, 5}), torch::randn({7})};
  std::vector<at::Tensor> exp_avg_sq{torch::rand({3, 5}), torch::rand({7})};
};

at::Tensor part(const at::Tensor& whole, int rank, int world) {
  const int64_t shard = (whole.numel() + world - 1) / world;
  auto flat = torch::cat({whole.reshape(-1), torch::zeros({shard * world - whole.numel()})});
  return flat.narrow(0, rank * shard, shard).clone();
}

// Contents holding `w` whole (world 1) or rank's shards; the optimizer carries the moments.
struct Holder {
  std::vector<at::Tensor> values;
  std::unique_ptr<torch::optim::AdamW> opt;
  CheckpointContents c;
  Holder(const Whole& w, int rank, int world, bool with_state) {
    for (size_t i = 0; i < w.params.size(); ++i) {
      auto v = world == 1 ? w.params[i].clone() : part(w.params[i], rank, world);
      if (!with_state) v.zero_();
      values.push_back(v.requires_grad_(true));
      c.parameters.push_back({w.names[i], w.params[i].sizes().vec(), values.back()});
    }
    opt = std::make_unique<torch::optim::AdamW>(values, torch::optim::AdamWOptions(1e-3));
    if (with_state)
      for (size_t i = 0; i < values.size(); ++i) {
        auto s = std::make_unique<torch::optim::AdamWParamState>();
        s->step(7);
        s->exp_avg(world == 1 ? w.exp_avg[i].clone() : part(w.exp_avg[i], rank, world));
        s->exp_avg_sq(world == 1 ? w.exp_avg_sq[i].clone() : part(w.exp_avg_sq[i], rank, world));
        opt->state()[omni::train::optimizer_key(values[i])] = std::move(s);
      }
    c.optimizer = opt.get();
    c.sharding.rank = rank;
    c.sharding.world = world;
    c.sharding.sharded = world > 1;
    c.state.global_step = 4;
    c.state.data.cursor = 9;
  }
  const torch::optim::AdamWParamState& state(size_t i) const {
    return static_cast<const torch::optim::AdamWParamState&>(
        *opt->state().at(omni::train::optimizer_key(values[i])));
  }
};

std::string sharded_save(const Whole& w, const std::string& out, int world) {
  omni::testing::Meeting meet(world);
  std::vector<std::unique_ptr<Holder>> holders;
  for (int r = 0; r < world; ++r) {
    holders.push_back(std::make_unique<Holder>(w, r, world, true));
    holders.back()->c.sharding.barrier = [&meet] { meet.wait(); };
  }
  std::string dir;
  std::vector<std::thread> ts;
  for (int r = 0; r < world; ++r)
    ts.emplace_back([&, r] {
      auto d = save_checkpoint(out, holders[static_cast<size_t>(r)]->c);
      if (r == 0) dir = d;
    });
  for (auto& t : ts) t.join();
  return dir;
}

struct Tmp {
  fs::path p = fs::temp_directory_path() / ("omni_ckpt_layout_" + std::to_string(::getpid()));
  Tmp() { fs::remove_all(p); }
  ~Tmp() { fs::remove_all(p); }
};

}  // namespace

TEST(CheckpointLayout, ShardedSaveLoadsWholeAndAtAnotherWorldSize) {
  torch::manual_seed(3);
  Whole w;
  Tmp tmp;
  const std::string dir = sharded_save(w, tmp.p.string(), 2);
  ASSERT_TRUE(fs::exists(fs::path(dir) / "model.shard-1-of-2.safetensors"));
  ASSERT_FALSE(fs::exists(fs::path(dir) / "model.safetensors"));

  Holder one(w, 0, 1, false);
  const auto st = load_checkpoint(dir, one.c);
  EXPECT_EQ(st.global_step, 4);
  EXPECT_EQ(st.data.cursor, 9);
  for (size_t i = 0; i < w.params.size(); ++i) {
    EXPECT_TRUE(torch::equal(one.values[i], w.params[i])) << w.names[i];
    EXPECT_TRUE(torch::equal(one.state(i).exp_avg(), w.exp_avg[i])) << w.names[i];
    EXPECT_TRUE(torch::equal(one.state(i).exp_avg_sq(), w.exp_avg_sq[i])) << w.names[i];
    EXPECT_EQ(one.state(i).step(), 7);
  }
  for (int r = 0; r < 3; ++r) {
    Holder three(w, r, 3, false);
    load_checkpoint(dir, three.c);
    for (size_t i = 0; i < w.params.size(); ++i) {
      EXPECT_TRUE(torch::equal(three.values[i], part(w.params[i], r, 3))) << w.names[i] << " rank " << r;
      EXPECT_TRUE(torch::equal(three.state(i).exp_avg_sq(), part(w.exp_avg_sq[i], r, 3))) << w.names[i];
    }
  }
}

TEST(CheckpointLayout, WholeSaveLoadsIntoShards) {
  torch::manual_seed(4);
  Whole w;
  Tmp tmp;
  Holder one(w, 0, 1, true);
  const std::string dir = save_checkpoint(tmp.p.string(), one.c);
  ASSERT_TRUE(fs::exists(fs::path(dir) / "model.safetensors"));
  Holder shard(w, 1, 2, false);
  load_checkpoint(dir, shard.c);
  for (size_t i = 0; i < w.params.size(); ++i) {
    EXPECT_TRUE(torch::equal(shard.values[i], part(w.params[i], 1, 2))) << w.names[i];
    EXPECT_TRUE(torch::equal(shard.state(i).exp_avg(), part(w.exp_avg[i], 1, 2))) << w.names[i];
  }
}

TEST(CheckpointLayout, TornShardedCheckpointIsRefused) {
  torch::manual_seed(5);
  Whole w;
  Tmp tmp;
  const std::string dir = sharded_save(w, tmp.p.string(), 2);
  fs::remove(fs::path(dir) / "optimizer.shard-1-of-2.safetensors");
  Holder one(w, 0, 1, false);
  try {
    load_checkpoint(dir, one.c);
    FAIL() << "loaded a torn checkpoint";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("torn sharded checkpoint"), std::string::npos) << e.what();
  }
}
