// Janus as a Trainable model through the model interface: the losses of a conversation equal the
// official ones (fixture losses.safetensors), gradients flow, parameter groups cover the tree.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include "omni/core/error.h"
#include "omni/generate/random.h"
#include "omni/io/checkpoint_torch.h"
#include "omni/io/image.h"
#include "omni/models/registry.h"
#include "test_paths.h"

using namespace omni;

namespace {
const std::string kDir = std::string(OMNI_FIXTURES) + "/janus_tiny";

models::TrainTurn turn(const std::string& role, const std::string& text, std::vector<std::string> images = {}) {
  models::TrainTurn t{role, generate::InterleavedInput::parse(text, images)};
  t.content.decode_images([](const std::string& p) { return io::read_image(p); });
  return t;
}

std::unique_ptr<models::Model> load_janus() {
  models::register_builtin_models();
  models::LoadOptions lo;
  lo.path = kDir;
  return models::find_family("janus").load(lo);
}
}  // namespace

TEST(JanusTrain, ConversationLossesEqualTheOfficialAndTrainUnderAutograd) {
  auto model = load_janus();
  models::Trainable* t = models::as_trainable(*model);
  ASSERT_NE(t, nullptr);
  auto golden = io::Checkpoint::open(kDir + "/losses.safetensors");
  at::Generator rng = generate::make_generator(torch::kCPU, 0);

  // The fixture's understanding example: no system prompt, labels on " A gradient with shapes." + eos.
  models::TrainExample und;
  und.system_prompt = "";  // the fixture's conversation has none (unset would be the official default)
  und.turns = {turn("user", "<image>\nWhat is in the image?", {kDir + "/test_image.png"}),
               turn("assistant", "A gradient with shapes.")};
  auto l = t->forward_train(und, rng);
  ASSERT_TRUE(l.ce.defined());
  EXPECT_FALSE(l.gen.defined());
  ASSERT_EQ(l.ce.numel(), 25);
  EXPECT_LT((l.ce - golden.get("und_token_ce")).abs().max().item<double>(), 1e-4);
  EXPECT_NEAR(l.ce.mean().item<double>(), golden.get("und_loss").item<double>(), 1e-5);
  ASSERT_TRUE(l.ce.requires_grad());
  l.ce.mean().backward();
  double lm = 0, vision = 0;
  for (const auto& g : t->parameter_groups())
    for (const auto& [name, p] : g.parameters) {
      if (!p.grad().defined()) continue;
      (g.name == "language_model" ? lm : g.name == "vision_model" ? vision : lm) += p.grad().abs().sum().item<double>();
    }
  EXPECT_GT(lm, 0);
  EXPECT_GT(vision, 0);  // the image enters through SigLIP + aligner, under autograd

  // The fixture's generation example: the t2i prompt, the image's VQ codes as targets.
  models::TrainExample gen;  // unset system prompt: "" for text-to-image, as the official script
  gen.turns = {turn("user", "A red apple on a wooden table."), turn("assistant", "<image>", {kDir + "/test_image.png"})};
  auto g = t->forward_train(gen, rng);
  ASSERT_TRUE(g.gen.defined());
  ASSERT_EQ(g.gen.numel(), 576);
  EXPECT_LT((g.gen - golden.get("gen_token_ce")).abs().max().item<double>(), 1e-4);
  EXPECT_NEAR(g.gen.mean().item<double>(), golden.get("gen_loss").item<double>(), 1e-5);

  // Parameter groups: the checkpoint's top-level modules, every parameter once.
  int64_t n = 0;
  std::vector<std::string> names;
  for (const auto& grp : t->parameter_groups()) {
    names.push_back(grp.name);
    for (const auto& [name, p] : grp.parameters) {
      EXPECT_EQ(name.rfind(grp.name + ".", 0), 0u) << name;
      n += p.numel();
    }
  }
  EXPECT_NE(std::find(names.begin(), names.end(), "gen_head"), names.end());
  EXPECT_GT(n, 2'000'000);

  models::TrainExample bad;
  bad.turns = {turn("assistant", "hi")};
  EXPECT_THROW(t->forward_train(bad, rng), Error);
}
