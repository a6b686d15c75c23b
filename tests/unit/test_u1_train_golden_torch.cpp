// SenseNova-U1 training at step 0 against the official code: tests/fixtures/u1_tiny/
// train_step0.safetensors was made by scripts/dev/u1_train_golden.py, which runs the official
// noising, attention rule, MoT decoder, CE (FlashGPTLMLoss, 'square' weights) and flow loss on a
// packed batch of four documents (understanding, text-to-image with a think block, edit,
// interleave with a duplicated image). omni builds the same batch from the same conversations and
// images, takes the recorded draws, and must give the same sequence, losses and gradients.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>

#include "omni/models/sensenova_u1/training.h"
#include "u1_test_util.h"

using namespace omni::testing;
namespace u1 = omni::sensenova_u1;
using omni::models::TrainExample;

namespace {
constexpr double kCeLossWeight = 0.1;  // the official 8B SFT's ce_loss_weight (shell/train_u1/8B.sh:97)

// The script's conversations read the fixture's PNGs.
TrainExample conversation(const std::vector<std::pair<std::string, std::string>>& turns, const std::vector<std::string>& files) {
  std::vector<omni::io::Image> imgs;
  for (const auto& f : files) imgs.push_back(omni::io::read_image(u1_dir() + "/" + f));
  return train_conversation(turns, imgs);
}

double max_abs_diff(const torch::Tensor& a, const torch::Tensor& b) {
  return (a.detach().to(torch::kDouble) - b.detach().to(torch::kDouble)).abs().max().item<double>();
}

std::vector<int64_t> ints(const torch::Tensor& t) {
  auto c = t.to(torch::kLong).contiguous().view(-1);
  return {c.data_ptr<int64_t>(), c.data_ptr<int64_t>() + c.numel()};
}

struct Golden {
  U1Fixture fx{"train_step0.safetensors"};
  u1::U1Config cfg = u1::U1Config::from_dir(u1_dir());
  omni::text::Tokenizer tok = omni::text::Tokenizer::from_file(u1_dir() + "/tokenizer.json");
  u1::SpecialIds ids = u1::SpecialIds::from(tok);
  u1::TrainSequence seq;
  Golden() {
    // the script's four samples (its metadata "samples"); the interleave one has no system turn
    std::vector<u1::TrainSequence> docs;
    docs.push_back(u1::build_train_sequence(
        conversation({{"user", "<image>\nWhich shapes do you see?"}, {"assistant", "A circle and a square, side by side."}},
                     {"und_image.png"}),
        cfg, tok, ids));
    docs.push_back(u1::build_train_sequence(
        conversation({{"user", "A lake under a blue sky."}, {"assistant", "<think>\nWater, sky.\n</think>\n\n<image>"}},
                     {"edit_image.png"}),
        cfg, tok, ids));
    docs.push_back(u1::build_train_sequence(
        conversation({{"user", "<image>\nTurn it into a lake scene."}, {"assistant", "<image>"}}, {"und_image.png", "edit_image.png"}),
        cfg, tok, ids));
    auto inter = conversation({{"user", "Draw two shapes and name them."}, {"assistant", "Here:<image>A circle and a square."}},
                              {"und_image.png"});
    inter.system_prompt = "";
    docs.push_back(u1::build_train_sequence(inter, cfg, tok, ids));
    seq = u1::pack_sequences(std::move(docs));
  }
};
Golden& golden() {
  static Golden g;
  return g;
}
}  // namespace

TEST(U1TrainGolden, SequenceEqualsTheOfficialRules) {
  auto& G = golden();
  const auto& s = G.seq;
  EXPECT_EQ(s.ids, ints(G.fx("input_ids")));
  EXPECT_EQ(s.labels, ints(G.fx("labels")));
  auto idx = G.fx("indexes");
  EXPECT_EQ(s.t, ints(idx[0]));
  EXPECT_EQ(s.h, ints(idx[1]));
  EXPECT_EQ(s.w, ints(idx[2]));
  EXPECT_EQ(s.doc, ints(G.fx("doc_ids")));
  // images in sequence order: grid, role, pixels (per-image sums of the ImageNet-normalised rows)
  auto grid = G.fx("grid_hw");
  auto gen = ints(G.fx("gen_flags"));
  auto sum = G.fx("pixel_sum"), sq = G.fx("pixel_sq_sum");
  ASSERT_EQ(s.images.size(), gen.size());
  for (size_t i = 0; i < s.images.size(); ++i) {
    const auto& im = s.images[i];
    EXPECT_EQ(im.native.grid.first, grid[i][0].item<int64_t>()) << i;
    EXPECT_EQ(im.native.grid.second, grid[i][1].item<int64_t>()) << i;
    EXPECT_EQ(im.gen, gen[i] != 0) << i;
    auto pv = im.native.pixel_values.to(torch::kDouble);
    EXPECT_NEAR(pv.sum().item<double>(), sum[i].item<double>(), 1e-6 * pv.numel()) << i;
    EXPECT_NEAR(pv.pow(2).sum().item<double>(), sq[i].item<double>(), 1e-6 * sq[i].item<double>()) << i;
  }
  // CE positions and the 'square' weights: sum over documents of sqrt(N_d)
  auto w = G.fx("ce_weight").to(torch::kDouble);
  std::vector<int64_t> ce_rows;
  for (size_t i = 0; i + 1 < s.labels.size(); ++i)
    if (s.labels[i + 1] != -100) ce_rows.push_back(static_cast<int64_t>(i));
  EXPECT_EQ(ce_rows, ints(G.fx("ce_rows")));
  EXPECT_EQ(s.ce_tokens(), static_cast<int64_t>(ce_rows.size()));
  // each document's weight 1/sqrt(N_d) on its N_d targets: the weights sum to the normaliser
  EXPECT_NEAR(w.sum().item<double>(), s.ce_norm(), 1e-6);  // weights stored as float32
  EXPECT_EQ(ints(w.gt(0).nonzero()), ce_rows);
}

TEST(U1TrainGolden, AttentionRuleEqualsTheOfficialFlexMask) {
  auto& G = golden();
  auto see = u1::train_attention_mask(G.seq).eq(0);
  EXPECT_TRUE(see.sum(1).to(torch::kLong).equal(G.fx("attention_visible_per_row")));
  EXPECT_TRUE(see.sum(0).to(torch::kLong).equal(G.fx("attention_visible_per_col")));
  // the packed layout the forward uses gives the dense rule's attention on every row but the
  // hidden ones (which no key sees and no target reads)
  const auto layout = u1::train_attention_layout(G.seq);
  const int64_t T = static_cast<int64_t>(G.seq.ids.size());
  torch::manual_seed(0);
  auto q = torch::randn({1, 4, T, 16}), k = torch::randn({1, 2, T, 16}), v = torch::randn({1, 2, T, 16});
  omni::nn::AttentionOptions dense, packed;
  dense.mask = u1::train_attention_mask(G.seq);
  packed.layout = &layout;
  auto a = omni::nn::attention(q, k, v, dense), b = omni::nn::attention(q, k, v, packed);
  auto keep = torch::tensor(std::vector<uint8_t>(G.seq.hidden.begin(), G.seq.hidden.end())).eq(0);
  const int64_t hidden_rows = T - keep.sum().item<int64_t>();
  EXPECT_EQ(hidden_rows, 2);  // the interleave pair's inner boundary
  EXPECT_LT(max_abs_diff(a.index({torch::indexing::Slice(), torch::indexing::Slice(), keep}),
                         b.index({torch::indexing::Slice(), torch::indexing::Slice(), keep})),
            1e-5);
}

TEST(U1TrainGolden, LossesAndGradientsEqualTheOfficialStepZero) {
  auto& G = golden();
  auto model = u1::NeoChatImpl::load(G.cfg);
  model->train();
  u1::TrainDraws draws;
  for (int k = 0;; ++k) {
    if (!G.fx.ck.contains("draw_noise_" + std::to_string(k))) break;
    draws.noise.push_back(G.fx("draw_noise_" + std::to_string(k)));
    draws.u.push_back(G.fx("draw_u_" + std::to_string(k)));
  }
  ASSERT_EQ(draws.noise.size(), 3u);
  auto out = u1::forward_train(*model, G.seq, nullptr, &draws);

  // text: per-position CE from the official logits at the CE rows; the weighted loss
  auto logits = G.fx("ce_logits");
  std::vector<int64_t> targets;
  for (size_t i = 0; i + 1 < G.seq.labels.size(); ++i)
    if (G.seq.labels[i + 1] != -100) targets.push_back(G.seq.labels[i + 1]);
  auto want_ce = -torch::log_softmax(logits, -1).gather(1, torch::tensor(targets).view({-1, 1})).view(-1);
  EXPECT_LT(max_abs_diff(out.ce_raw.detach(), want_ce), 2e-5);
  auto ce = kCeLossWeight * out.ce.sum() / G.seq.ce_norm();
  EXPECT_NEAR(ce.item<double>(), G.fx("ce_loss").item<double>(), 2e-6);

  // flow: the official t per row, per-row velocity MSE, the 1/sqrt(L)-weighted loss
  auto gen = out.gen.sum() / G.seq.gen_norm();
  EXPECT_LT(max_abs_diff(out.gen_raw.detach(), G.fx("gen_loss_per_row")), 1e-4 * G.fx("gen_loss_per_row").abs().max().item<double>());
  EXPECT_NEAR(gen.item<double>(), G.fx("gen_loss").item<double>(), 1e-5 * G.fx("gen_loss").item<double>());
  EXPECT_NEAR((ce + gen).item<double>(), G.fx("total_loss").item<double>(), 1e-5);

  // gradients of the official total (0.1 CE + flow) for every parameter
  model->zero_grad();
  (ce + gen).backward();
  int compared = 0, full = 0;
  double worst_norm = 0, worst_full = 0;
  for (const auto& item : model->named_parameters()) {
    const std::string& name = item.key();
    const auto& p = item.value();
    ASSERT_TRUE(G.fx.ck.contains("grad_norm/" + name)) << name;
    const double want = G.fx("grad_norm/" + name).item<double>();
    const double got = p.grad().defined() ? p.grad().norm().item<double>() : 0.0;
    EXPECT_NEAR(got, want, 1e-4 * want + 1e-9) << name;
    if (want > 0) worst_norm = std::max(worst_norm, std::abs(got - want) / want);
    ++compared;
    if (G.fx.ck.contains("grad/" + name)) {
      const double d = max_abs_diff(p.grad(), G.fx("grad/" + name));
      EXPECT_LT(d, 1e-4 * want + 1e-9) << name;
      if (want > 0) worst_full = std::max(worst_full, d / want);
      ++full;
    }
  }
  std::printf("ce %.9g (official %.9g)  gen %.9g (official %.9g)  grad norms: worst rel %.3g; full grads: worst max-abs / norm %.3g\n",
              ce.item<double>(), G.fx("ce_loss").item<double>(), gen.item<double>(), G.fx("gen_loss").item<double>(),
              worst_norm, worst_full);
  EXPECT_EQ(compared, 76);  // every tensor of the checkpoint
  EXPECT_GT(full, 40);
}
