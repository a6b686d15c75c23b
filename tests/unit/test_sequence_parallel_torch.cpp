// Ulysses sequence parallelism (nn/sequence_parallel.h) against one process: K threads stand in
// for the processes of a group (their collectives meet in shared memory). Attention over a packed
// layout, with the rows split unevenly (padding), gives every row's output and, summed over the
// threads, every gradient of the whole-sequence computation.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <thread>

#include "omni/core/error.h"
#include "omni/nn/attention.h"
#include "omni/nn/qwen2_mot.h"
#include "omni/nn/sequence_parallel.h"
#include "thread_meeting.h"

using namespace omni;
using omni::nn::SequenceParallel;

namespace {

// In-memory collectives for `n` threads: each posts its tensor, all meet, each reads what it needs.
class ThreadGroup {
 public:
  explicit ThreadGroup(int n) : n_(n), posted_(static_cast<size_t>(n)), meeting_(n) {}
  SequenceParallel::Collectives collectives(int rank) {
    SequenceParallel::Collectives c;
    c.rank = rank;
    c.size = n_;
    c.all_to_all = [this, rank](const at::Tensor& x) {
      auto all = exchange(rank, x);
      std::vector<at::Tensor> mine;
      for (const auto& t : all) mine.push_back(t[rank]);
      return torch::stack(mine);
    };
    c.all_gather = [this, rank](const at::Tensor& x) { return torch::stack(exchange(rank, x)); };
    return c;
  }

 private:
  std::vector<at::Tensor> exchange(int rank, const at::Tensor& x) {
    posted_[static_cast<size_t>(rank)] = x.clone();
    meet();
    std::vector<at::Tensor> all;
    for (const auto& t : posted_) all.push_back(t.clone());
    meet();  // nobody posts the next exchange before everyone has read this one
    return all;
  }
  void meet() { meeting_.wait(); }
  int n_;
  std::vector<at::Tensor> posted_;
  omni::testing::Meeting meeting_;
};

// Two documents (text, a clean image, a noisy target; then text) of 11 rows.
nn::PackedLayout layout() { return {{7, 4}, {2, 3, 2, 4}, {"causal", "full", "noise", "causal"}}; }

}  // namespace

TEST(SequenceParallel, SplitPadsToTheGroupAndOwnsRealRowsOnly) {
  ThreadGroup tg(3);
  SequenceParallel sp(tg.collectives(2));
  const auto s = sp.split(11);  // 4 rows each; the last process holds 3 real rows and 1 padding row
  EXPECT_EQ(s.padded, 12);
  EXPECT_EQ(s.begin, 8);
  EXPECT_EQ(s.end, 12);
  EXPECT_TRUE(s.owns(10));
  EXPECT_FALSE(s.owns(11));
  EXPECT_FALSE(s.owns(7));
  auto x = torch::arange(11).view({11, 1});
  auto local = sp.local_rows(x, 0, s);
  EXPECT_TRUE(torch::equal(local.view(-1), torch::tensor({8, 9, 10, 0}, torch::kLong)));
  EXPECT_TRUE(torch::equal(sp.owned(torch::tensor({1, 8, 11, 10}), s), torch::tensor({false, true, false, true})));
}

TEST(SequenceParallel, PaddedLayoutCutsAFlexSampleAndAddsAnUnseenOne) {
  ThreadGroup tg(4);
  SequenceParallel sp(tg.collectives(0));
  const auto s = sp.split(10);  // padded to 12
  // a padding sample of 6 rows reaching past the 10-row sequence: cut at 10
  const nn::PackedLayout l{{5, 6}, {2, 3, 6}, {"causal", "full", "causal"}};
  const auto p = nn::padded_layout(l, s);
  EXPECT_EQ(p.sample_lens, (std::vector<int64_t>{5, 5, 2}));
  EXPECT_EQ(p.split_lens, (std::vector<int64_t>{2, 3, 5, 2}));
  EXPECT_EQ(p.modes, (std::vector<std::string>{"causal", "full", "causal", "full"}));
}

TEST(SequenceParallel, TokenRouteOfARowRange) {
  auto r = nn::TokenRoute::gen_range(10, 3, 7).rows(5, 9);  // rows 5..8: 5, 6 generation
  EXPECT_TRUE(torch::equal(r.gen, torch::tensor({0, 1}, torch::kLong)));
  EXPECT_TRUE(torch::equal(r.und, torch::tensor({2, 3}, torch::kLong)));
  EXPECT_TRUE(nn::TokenRoute::gen_range(10, 3, 7).rows(0, 3).all_und());
}

// Grouped-query attention (4 query heads, 2 key/value heads) split over `K` threads.
void check_attention_matches_one_process(int K) {
  torch::manual_seed(7);
  const int64_t T = 11, D = 8;
  auto q = torch::randn({1, 4, T, D}, torch::kFloat64), k = torch::randn({1, 2, T, D}, torch::kFloat64),
       v = torch::randn({1, 2, T, D}, torch::kFloat64), w = torch::randn({1, 4, T, D}, torch::kFloat64);
  const auto l = layout();
  nn::AttentionOptions whole;
  whole.layout = &l;
  std::vector<at::Tensor> ref_leaves{q.clone().requires_grad_(true), k.clone().requires_grad_(true),
                                     v.clone().requires_grad_(true)};
  auto ref = nn::attention(ref_leaves[0], ref_leaves[1], ref_leaves[2], whole);
  (ref * w).sum().backward();

  ThreadGroup tg(K);
  std::vector<at::Tensor> outs(static_cast<size_t>(K));
  std::vector<std::vector<at::Tensor>> grads(static_cast<size_t>(K));
  std::vector<std::thread> threads;
  for (int r = 0; r < K; ++r)
    threads.emplace_back([&, r] {
      SequenceParallel sp(tg.collectives(r));
      const auto s = sp.split(T);
      std::vector<at::Tensor> leaves{q.clone().requires_grad_(true), k.clone().requires_grad_(true),
                                     v.clone().requires_grad_(true)};
      const auto padded = nn::padded_layout(l, s);
      nn::AttentionOptions o;
      o.layout = &padded;
      o.sequence_parallel = &sp;
      auto local = nn::attention(sp.local_rows(leaves[0], 2, s), sp.local_rows(leaves[1], 2, s),
                                 sp.local_rows(leaves[2], 2, s), o);
      auto full = sp.gather_rows(local, 2, s);
      sp.record_output(local);
      // this process's loss: the rows it owns
      auto mine = sp.owned(torch::arange(T), s).view({1, 1, T, 1}).to(torch::kFloat64);
      ((full * w * mine).sum() + sp.anchor()).backward();
      outs[static_cast<size_t>(r)] = full.detach();
      for (auto& t : leaves) grads[static_cast<size_t>(r)].push_back(t.grad());
    });
  for (auto& t : threads) t.join();
  for (int r = 0; r < K; ++r) EXPECT_TRUE(torch::allclose(outs[static_cast<size_t>(r)], ref, 1e-12, 1e-12)) << r;
  for (size_t i = 0; i < 3; ++i) {
    auto sum = torch::zeros_like(ref_leaves[i]);
    for (int r = 0; r < K; ++r) sum += grads[static_cast<size_t>(r)][i];
    EXPECT_TRUE(torch::allclose(sum, ref_leaves[i].grad(), 1e-12, 1e-12)) << "input " << i;
  }
}

TEST(SequenceParallel, AttentionAndGradientsMatchOneProcessOverTwo) { check_attention_matches_one_process(2); }

TEST(SequenceParallel, HeadCountsTheGroupDoesNotDivideAreAnError) {
  ThreadGroup tg(3);
  SequenceParallel sp(tg.collectives(0));
  auto q = torch::zeros({1, 4, 2, 8}), kv = torch::zeros({1, 2, 2, 8});
  try {
    sp.rows_to_heads(q, kv, kv);
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("train.ulysses_size: 3 does not divide"), std::string::npos) << e.what();
  }
}
