// BAGEL's training forward against the official micro-step (tests/fixtures/bagel_tiny/
// train.safetensors; README section 3 "train.safetensors"): the packed batch of two samples
// through Bagel.forward, CE and MSE with the trainer's normalisation, and the gradient of every
// trainable parameter after loss.backward().
#include <gtest/gtest.h>

#include <fstream>
#include <sstream>
#include <nlohmann/json.hpp>
#include <string>

#include "alignment_util.h"
#include "omni/io/checkpoint_torch.h"
#include "omni/io/image.h"
#include "omni/models/bagel/inferencer.h"
#include "omni/models/bagel/model.h"
#include "omni/models/bagel/packing.h"
#include "omni/text/tokenizer.h"
#include "omni/nn/attention.h"
#include "omni/nn/flux_vae.h"
#include "test_paths.h"

using namespace omni;
using namespace omni::testing;

namespace {
std::string bagel_dir() { return std::string(OMNI_FIXTURES) + "/bagel_tiny"; }

std::vector<int64_t> to_vec(const torch::Tensor& t) {
  auto c = t.to(torch::kLong).contiguous();
  return std::vector<int64_t>(c.data_ptr<int64_t>(), c.data_ptr<int64_t>() + c.numel());
}

struct TrainFixture {
  io::Checkpoint ck = io::Checkpoint::open(bagel_dir() + "/train.safetensors");
  torch::Tensor operator()(const std::string& n) const { return ck.get(n).clone(); }
  // manifest.json is Python's json.dumps (it holds -Infinity, which strict JSON parsers refuse):
  // parse just the train split_info's "attn_modes" array.
  std::vector<std::string> attn_modes() const {
    std::ifstream in(bagel_dir() + "/manifest.json");
    std::stringstream ss;
    ss << in.rdbuf();
    const std::string text = ss.str();
    const auto tr = text.find("\"split_info\"", text.find("\"train\""));
    const auto a = text.find('[', text.find("\"attn_modes\"", tr));
    const auto b = text.find(']', a);
    if (tr == std::string::npos || a == std::string::npos || b == std::string::npos) return {};
    return nlohmann::json::parse(text.substr(a, b - a + 1)).get<std::vector<std::string>>();
  }
};

bagel::PackedBatch batch_from(const TrainFixture& f, const torch::Tensor& padded_latent) {
  bagel::PackedBatch b;
  b.sequence_length = f("sequence_length").item<int64_t>();
  b.sample_lens = to_vec(f("sample_lens"));
  b.split_lens = to_vec(f("split_lens"));
  b.attn_modes = f.attn_modes();
  b.packed_text_ids = f("packed_text_ids");
  b.packed_text_indexes = f("packed_text_indexes");
  b.packed_position_ids = f("packed_position_ids");
  b.packed_vit_tokens = f("packed_vit_tokens");
  b.packed_vit_position_ids = f("packed_vit_position_ids");
  b.packed_vit_token_indexes = f("packed_vit_token_indexes");
  b.vit_token_seqlens = to_vec(f("vit_token_seqlens"));
  b.padded_latent = padded_latent;
  auto shapes = f("patchified_vae_latent_shapes");
  for (int64_t i = 0; i < shapes.size(0); ++i)
    b.patchified_vae_latent_shapes.emplace_back(shapes[i][0].item<int64_t>(), shapes[i][1].item<int64_t>());
  b.packed_latent_position_ids = f("packed_latent_position_ids");
  b.packed_vae_token_indexes = f("packed_vae_token_indexes");
  b.packed_timesteps = f("packed_timesteps_raw");
  b.mse_loss_indexes = f("mse_loss_indexes");
  b.ce_loss_indexes = f("ce_loss_indexes");
  b.packed_label_ids = f("packed_label_ids");
  return b;
}

// Every trainable parameter's gradient against the official one after loss.backward().
void expect_official_grads(bagel::BagelImpl& model, const TrainFixture& f) {
  int compared = 0;
  double worst_rel = 0;
  std::string worst_name;
  for (const auto& item : model.named_parameters()) {
    const std::string& name = item.key();
    const torch::Tensor& p = item.value();
    if (!p.requires_grad()) {
      EXPECT_TRUE(name == "vit_pos_embed.pos_embed" || name == "latent_pos_embed.pos_embed") << name;
      continue;
    }
    ASSERT_TRUE(f.ck.contains("grad." + name)) << name;
    ASSERT_TRUE(p.grad().defined()) << name << " got no gradient";
    auto g = p.grad().to(torch::kFloat64);
    auto want = f("grad." + name).to(torch::kFloat64);
    const double ref = want.norm().item<double>();
    if (ref < 1e-10) {  // the SigLIP k_proj biases: mathematically zero, rounding noise only
      EXPECT_LE(g.abs().max().item<double>(), 1e-9) << name;
    } else {
      const double rel = (g - want).norm().item<double>() / ref;
      EXPECT_LE(rel, 1e-4) << name;
      if (rel > worst_rel) {
        worst_rel = rel;
        worst_name = name;
      }
    }
    ++compared;
  }
  EXPECT_EQ(compared, 109);
  std::cout << "[align] grads: " << compared << " tensors, worst relative L2 " << worst_rel << " (" << worst_name
            << ")  [1e-4]" << std::endl;
}
}  // namespace

TEST(BagelTrain, PackedMaskFollowsTheOfficialRules) {
  bagel::PackedBatch b;
  b.sequence_length = 7;
  b.sample_lens = {5, 2, 9};  // the last is the flex padding sample
  b.split_lens = {2, 2, 1, 1, 1, 9};
  b.attn_modes = {"causal", "noise", "full", "causal", "full", "causal"};
  auto m = bagel::packed_attention_mask(b) == 0;  // true = attend
  // sample 0: causal [0,1], noise [2,3], full [4]
  EXPECT_TRUE(m[1][0].item<bool>());
  EXPECT_FALSE(m[0][1].item<bool>());
  EXPECT_TRUE(m[2][3].item<bool>());   // inside the noise split: bidirectional
  EXPECT_TRUE(m[2][0].item<bool>());   // noise sees the past
  EXPECT_FALSE(m[4][2].item<bool>());  // nobody else sees noise
  EXPECT_TRUE(m[4][1].item<bool>());
  EXPECT_FALSE(m[5][4].item<bool>());  // samples are separate documents
  EXPECT_TRUE(m[6][5].item<bool>());
  EXPECT_FALSE(m[5][6].item<bool>());
  b.attn_modes[0] = "sparse";
  EXPECT_THROW(bagel::packed_attention_mask(b), Error);
}

// The tiny model in training mode, and the fixture's VAE latents (the frozen VAE under no_grad).
std::pair<std::shared_ptr<bagel::BagelImpl>, torch::Tensor> micro_step_model(TrainFixture& f) {
  auto cfg = bagel::BagelConfig::load(bagel_dir());
  auto model = bagel::BagelImpl::load(cfg);
  model->use_training_position_tables();
  model->train();
  auto vae = nn::FluxAutoEncoderImpl::load(bagel_dir() + "/ae.safetensors", cfg.vae);
  torch::NoGradGuard ng;
  return {model, vae->encode(f("padded_images"), f("vae_posterior_eps"))};
}

TEST(BagelTrain, LossesAndGradientsMatchTheOfficialMicroStep) {
  torch::set_num_threads(1);
  TrainFixture f;
  auto [model, padded_latent] = micro_step_model(f);
  expect_close("padded_latent", padded_latent, f("padded_latent"), 1e-4);

  auto b = batch_from(f, padded_latent);
  auto out = model->forward_train(b, f("flow_noise"));
  expect_close("ce_per_token", out.ce, f("ce_per_token"), 1e-5);
  expect_close("mse_per_element", out.mse, f("mse_per_element"), 1e-4);
  auto ce = out.ce.sum() / out.ce.size(0);
  auto mse = out.mse.mean(-1).sum() / out.mse.size(0);
  auto loss = ce + mse;
  expect_close("ce", ce, f("ce"), 0, 1e-5);
  expect_close("mse", mse, f("mse"), 0, 1e-5);
  expect_close("loss", loss, f("loss"), 0, 1e-5);
  loss.backward();

  expect_official_grads(*model, f);
}

// Step-0 alignment of the JSONL path: the two conversations behind train.safetensors (sample 0:
// "Describe the image." + und_image as ViT -> "A red disc." + edit_image as the target; sample 1,
// an edit: edit_image (clean VAE + ViT by the default rule) + "turn it around" -> und_image) are
// packed like the official pack_sequence, and with the fixture's draws injected give its losses
// and gradients.
TEST(BagelTrain, ConversationsPackLikeTheOfficialDatasetAndTrainToTheSameGradients) {
  torch::set_num_threads(1);
  TrainFixture f;
  auto cfg = bagel::BagelConfig::load(bagel_dir());
  auto tok = text::Tokenizer::from_file(bagel_dir() + "/tokenizer.json");
  const auto ids = bagel::BagelInferencer::token_ids(tok);
  bagel::Encode encode = [&](const std::string& t) {
    auto e = tok.encode(t, false);
    return std::vector<int64_t>(e.begin(), e.end());
  };
  auto turn = [](const std::string& role, const std::string& text, std::vector<std::string> images) {
    models::TrainTurn t{role, generate::InterleavedInput::parse(text, images)};
    t.content.decode_images([](const std::string& p) { return io::read_image_composited(p); });
    return t;
  };
  const std::string und = bagel_dir() + "/und_image.png", edit = bagel_dir() + "/edit_image.png";
  models::TrainExample s0, s1;
  s0.turns = {turn("user", "Describe the image.<image>", {und}), turn("assistant", "A red disc.<image>", {edit})};
  s0.image_roles = {"vit", "target"};  // understanding input + generation target (not an edit source)
  s1.turns = {turn("user", "<image>turn it around", {edit}), turn("assistant", "<image>", {und})};
  const std::vector<double> timesteps = {-2.2468976974487305, 1.5005053281784058};
  auto packed = bagel::pack_conversations({&s0, &s1}, cfg, ids, encode, {}, nullptr, &timesteps);
  const auto& b = packed.batch;

  EXPECT_EQ(b.sequence_length, f("sequence_length").item<int64_t>());
  auto without_pad = [](std::vector<int64_t> v) { v.pop_back(); return v; };  // the flex padding sample
  EXPECT_EQ(b.sample_lens, without_pad(to_vec(f("sample_lens"))));
  EXPECT_EQ(b.split_lens, without_pad(to_vec(f("split_lens"))));
  auto modes = f.attn_modes();
  modes.pop_back();
  EXPECT_EQ(b.attn_modes, modes);
  for (const char* name : {"packed_text_ids", "packed_text_indexes", "packed_position_ids", "packed_vit_position_ids",
                           "packed_vit_token_indexes", "packed_latent_position_ids", "packed_vae_token_indexes",
                           "mse_loss_indexes", "ce_loss_indexes", "packed_label_ids"}) {
    const torch::Tensor ours = std::string(name) == "packed_text_ids" ? b.packed_text_ids
                               : std::string(name) == "packed_text_indexes" ? b.packed_text_indexes
                               : std::string(name) == "packed_position_ids" ? b.packed_position_ids
                               : std::string(name) == "packed_vit_position_ids" ? b.packed_vit_position_ids
                               : std::string(name) == "packed_vit_token_indexes" ? b.packed_vit_token_indexes
                               : std::string(name) == "packed_latent_position_ids" ? b.packed_latent_position_ids
                               : std::string(name) == "packed_vae_token_indexes" ? b.packed_vae_token_indexes
                               : std::string(name) == "mse_loss_indexes" ? b.mse_loss_indexes
                               : std::string(name) == "ce_loss_indexes" ? b.ce_loss_indexes
                                                                        : b.packed_label_ids;
    EXPECT_EQ(to_vec(ours), to_vec(f(name))) << name;
  }
  EXPECT_EQ(b.vit_token_seqlens, to_vec(f("vit_token_seqlens")));
  ASSERT_EQ(b.patchified_vae_latent_shapes.size(), 3u);
  EXPECT_EQ(b.patchified_vae_latent_shapes[2], std::make_pair(int64_t{4}, int64_t{5}));
  EXPECT_TRUE(torch::equal(b.packed_timesteps, f("packed_timesteps_raw")));
  expect_close("packed_vit_tokens", b.packed_vit_tokens, f("packed_vit_tokens"), 1e-6);
  expect_close("padded_images", packed.padded_images, f("padded_images"), 1e-6);
  EXPECT_EQ(packed.ce_tokens, 12);
  EXPECT_EQ(packed.mse_tokens, 44);
  // The plan (what the trainer normalises by) agrees with the packing.
  const auto p0 = bagel::plan_conversation(s0, cfg, encode), p1 = bagel::plan_conversation(s1, cfg, encode);
  EXPECT_EQ(p0.seq_len + p1.seq_len, b.sequence_length);
  EXPECT_EQ(p0.ce_tokens + p1.ce_tokens, 12);
  EXPECT_EQ(p0.gen_tokens + p1.gen_tokens, 44);

  auto model = bagel::BagelImpl::load(cfg, ids);
  model->use_training_position_tables();
  model->train();
  auto vae = nn::FluxAutoEncoderImpl::load(bagel_dir() + "/ae.safetensors", cfg.vae);
  bagel::PackedBatch batch = b;
  {
    torch::NoGradGuard ng;
    batch.padded_latent = vae->encode(packed.padded_images, f("vae_posterior_eps"));
  }
  auto out = model->forward_train(batch, f("flow_noise"));
  auto ce = out.ce.sum() / 12;
  auto mse = out.mse.mean(-1).sum() / 44;
  expect_close("ce", ce, f("ce"), 0, 1e-5);
  expect_close("mse", mse, f("mse"), 0, 1e-5);
  (ce + mse).backward();
  expect_official_grads(*model, f);

  // Roles that cannot be: a user target, an unknown name, a count mismatch.
  models::TrainExample bad = s0;
  bad.image_roles = {"target", "target"};
  EXPECT_THROW(bagel::plan_conversation(bad, cfg, encode), Error);
  bad.image_roles = {"vit", "painting"};
  EXPECT_THROW(bagel::plan_conversation(bad, cfg, encode), Error);
  bad.image_roles = {"vit"};
  EXPECT_THROW(bagel::plan_conversation(bad, cfg, encode), Error);
}

// The training forward's split-by-split attention equals the dense official mask, gradients too.
TEST(BagelTrain, PackedAttentionEqualsTheDenseMask) {
  bagel::PackedBatch b;
  b.sequence_length = 23;
  b.sample_lens = {14, 9, 5};  // the last is a flex padding sample beyond the sequence
  b.split_lens = {3, 4, 2, 5, 2, 4, 3, 5};
  b.attn_modes = {"causal", "full", "causal", "noise", "causal", "noise", "full", "causal"};
  auto q = torch::randn({1, 4, 23, 8}, torch::requires_grad());
  auto k = torch::randn({1, 2, 23, 8}, torch::requires_grad());
  auto v = torch::randn({1, 2, 23, 8}, torch::requires_grad());
  nn::AttentionOptions dense;
  dense.mask = bagel::packed_attention_mask(b);
  auto want = nn::attention(q, k, v, dense);
  const nn::PackedLayout layout{b.sample_lens, b.split_lens, b.attn_modes};
  nn::AttentionOptions packed;
  packed.layout = &layout;
  auto got = nn::attention(q, k, v, packed);
  EXPECT_LT((got - want).abs().max().item<double>(), 1e-5);
  auto gw = torch::autograd::grad({want.pow(2).sum()}, {q, k, v});
  auto gg = torch::autograd::grad({got.pow(2).sum()}, {q, k, v});
  for (int i = 0; i < 3; ++i) EXPECT_LT((gg[i] - gw[i]).abs().max().item<double>(), 1e-4) << i;
  b.attn_modes[1] = "sparse";
  const nn::PackedLayout bad{b.sample_lens, b.split_lens, b.attn_modes};
  packed.layout = &bad;
  EXPECT_THROW(nn::attention(q, k, v, packed), Error);
}

// freeze_und (the official qwen2_navit.py detaches): the same losses; lm_head gets the gradient it
// gets without it (the same hidden values); the generation expert still learns (from the flow loss
// only: the CE no longer reaches it through the understanding rows); the understanding expert, the
// embeddings, the ViT and the connector get nothing.
TEST(BagelTrain, FreezeUndDetachesTheUnderstandingRows) {
  torch::set_num_threads(1);
  TrainFixture f;
  auto [model, padded_latent] = micro_step_model(f);
  auto step = [&](bool freeze) {
    model->language_model->model->set_freeze_und(freeze);
    model->zero_grad();
    auto out = model->forward_train(batch_from(f, padded_latent), f("flow_noise"));
    auto loss = out.ce.sum() / out.ce.size(0) + out.mse.mean(-1).sum() / out.mse.size(0);
    loss.backward();
    std::map<std::string, torch::Tensor> g;
    for (const auto& p : model->named_parameters())
      g[p.key()] = p.value().grad().defined() ? p.value().grad().clone() : torch::Tensor();
    return std::make_pair(loss.item<double>(), g);
  };
  const auto [loss_free, g_free] = step(false);
  const auto [loss_frozen, g_frozen] = step(true);
  model->language_model->model->set_freeze_und(false);
  EXPECT_EQ(loss_free, loss_frozen);
  auto none = [&](const std::string& n) {
    const auto& t = g_frozen.at(n);
    return !t.defined() || t.abs().max().item<double>() == 0;
  };
  int gen = 0, und = 0;
  for (const auto& [name, g] : g_free) {
    if (!g.defined()) continue;
    const bool gen_expert = name.find("_moe_gen") != std::string::npos || name.rfind("vae2llm.", 0) == 0 ||
                            name.rfind("llm2vae.", 0) == 0 || name.rfind("time_embedder.", 0) == 0 ||
                            name.rfind("latent_pos_embed.", 0) == 0 || name == "language_model.lm_head.weight";
    if (name == "language_model.lm_head.weight") {
      EXPECT_LT((g_frozen.at(name) - g).abs().max().item<double>(), 1e-6 * (1 + g.abs().max().item<double>()));
    } else if (gen_expert) {
      ASSERT_TRUE(g_frozen.at(name).defined()) << name;
      EXPECT_GT(g_frozen.at(name).abs().max().item<double>(), 0) << name;
      ++gen;
    } else {
      EXPECT_TRUE(none(name)) << name;  // layers.N.{self_attn.*_proj, mlp, norms}, embed_tokens, vit_model, connector
      ++und;
    }
  }
  EXPECT_GT(gen, 10);
  EXPECT_GT(und, 10);
}
