// BAGEL's Qwen2 MoT decoder against the official forward_inference / generate_text fixtures
// (tests/fixtures/bagel_tiny/understanding.safetensors, edit.safetensors; README section 3):
// the LLM is fed the official packed inputs (vit_block_llm_input, text ids, vae_block_llm_input)
// so these tests isolate the decoder, its routing, RoPE positions and the K/V context.
#include <gtest/gtest.h>

#include <string>

#include "alignment_util.h"
#include "bagel_test_util.h"
#include "omni/io/checkpoint_torch.h"
#include "omni/io/hf_config.h"
#include "omni/io/module_loader_torch.h"
#include "omni/nn/linear.h"
#include "omni/nn/qwen2_mot.h"
#include "test_paths.h"

using namespace omni;
using namespace omni::testing;

namespace {
using Fix = BagelFixture;

// The tiny BAGEL's language model, loaded from the fixture (a fresh copy per call).
nn::MoTForCausalLM load_tiny_llm() {
  auto cfg = nn::Qwen2MoTConfig::from_hf(io::HfConfig::from_file(bagel_dir() + "/llm_config.json"));
  nn::MoTForCausalLM lm(cfg);
  auto ck = io::Checkpoint::open(bagel_dir() + "/ema.safetensors");
  io::LoadOptions lo;
  lo.prefix = "language_model.";
  io::load_module(*lm, ck, lo);
  lm->eval();
  return lm;
}

nn::MoTForCausalLM& tiny_llm() {
  static nn::MoTForCausalLM m = load_tiny_llm();
  return m;
}

struct BagelMoT : ::testing::Test {
  void SetUp() override { torch::set_num_threads(1); }
};

void expect_cache(const nn::KVContext& ctx, const Fix& f, const std::string& prefix) {
  for (int64_t l = 0; l < ctx.layers(); ++l) {
    expect_close(prefix + "k." + std::to_string(l), ctx.keys(l)[0].transpose(0, 1), f(prefix + "k." + std::to_string(l)), 1e-4);
    expect_close(prefix + "v." + std::to_string(l), ctx.values(l)[0].transpose(0, 1), f(prefix + "v." + std::to_string(l)), 1e-4);
  }
}
}  // namespace

TEST_F(BagelMoT, ConfigForcesQkNormAndUntied) {
  auto cfg = nn::Qwen2MoTConfig::from_hf(io::HfConfig::from_file(bagel_dir() + "/llm_config.json"));
  EXPECT_TRUE(cfg.qk_norm);
  EXPECT_TRUE(cfg.llm.qkv_bias);
  EXPECT_FALSE(cfg.llm.attention_bias);
  EXPECT_EQ(cfg.llm.head_dim, 16);
  EXPECT_EQ(cfg.llm.num_key_value_heads, 2);
}

TEST_F(BagelMoT, UnderstandingPrefillAndGreedyDecode) {
  c10::InferenceMode g;
  Fix f("understanding.safetensors");
  auto& lm = tiny_llm();
  auto ctx = lm->model->make_context();

  // ViT block: markers + patches, und mode, full attention, one shared RoPE position.
  auto h_vit = lm->model->forward_inference(f("vit_block_llm_input"), f("vit_block_position_ids"), ctx,
                                            nn::TokenRoute::understanding(), /*causal=*/false, /*update=*/true);
  expect_close("vit_block_hidden", h_vit, f("vit_block_hidden"), 1e-4);

  // Text block: causal, und mode.
  auto ids = f("text_ids");
  auto h_txt = lm->model->forward_inference(lm->model->embed(ids), f("text_position_ids"), ctx,
                                            nn::TokenRoute::understanding(), true, true);
  expect_close("text_block_hidden", h_txt, f("text_block_hidden"), 1e-4);
  expect_close("prefill_text_logits", lm->logits(h_txt), f("prefill_text_logits"), 1e-4);
  EXPECT_EQ(ctx.length, 52);
  expect_cache(ctx, f, "cache.");

  // generate_text: start token at the next RoPE position; greedy.
  auto want = f("greedy_tokens");
  auto step_pos = f("step_position_ids");
  auto step_logits = f("step_logits");
  int64_t tok = want[0].item<int64_t>();
  std::vector<int64_t> got{tok};
  torch::Tensor logits_all = torch::empty_like(step_logits);
  for (int64_t i = 0; i < want.size(0); ++i) {
    auto x = lm->model->embed(torch::tensor({tok}, torch::kLong));
    auto h = lm->model->forward_inference(x, step_pos.narrow(0, i, 1), ctx, nn::TokenRoute::understanding(), true, true);
    auto lg = lm->logits(h);
    logits_all[i].copy_(lg[0]);
    tok = lg.argmax(-1).item<int64_t>();
    if (i + 1 < want.size(0)) got.push_back(tok);
  }
  expect_close("step_logits", logits_all, step_logits, 1e-4);
  EXPECT_TRUE(torch::equal(torch::tensor(got, torch::kLong), want)) << "greedy tokens differ";
}

TEST_F(BagelMoT, GenModeRoutesLatentsToGenExpert) {
  c10::InferenceMode g;
  Fix f("edit.safetensors");
  auto& lm = tiny_llm();
  auto ctx = lm->model->make_context();
  auto x = f("vae_block_llm_input");  // [26, 64]: marker, 24 latent tokens, marker
  const int64_t T = x.size(0);
  auto h = lm->model->forward_inference(x, f("vae_block_position_ids"), ctx, nn::TokenRoute::gen_range(T, 1, T - 1),
                                        false, true);
  expect_close("vae_block_hidden", h, f("vae_block_hidden"), 1e-4);
  // The same rows through the understanding expert only must differ (the twins differ).
  auto ctx2 = lm->model->make_context();
  auto h_und = lm->model->forward_inference(x, f("vae_block_position_ids"), ctx2, nn::TokenRoute::understanding(),
                                            false, true);
  EXPECT_GT((h_und - f("vae_block_hidden")).abs().max().item<double>(), 1e-3);
}

TEST_F(BagelMoT, ContextForkIsCopyOnWrite) {
  c10::InferenceMode g;
  auto& lm = tiny_llm();
  auto ctx = lm->model->make_context();
  auto ids = torch::tensor({501, 97, 98, 502}, torch::kLong);
  lm->model->forward_inference(lm->model->embed(ids), torch::arange(4, torch::kLong), ctx,
                               nn::TokenRoute::understanding(), true, true);
  ctx.rope = 4;
  auto fork = ctx.fork();
  auto k_before = fork.keys(0).clone();
  lm->model->forward_inference(lm->model->embed(ids), torch::arange(4, 8, torch::kLong), ctx,
                               nn::TokenRoute::understanding(), true, true);
  EXPECT_EQ(ctx.length, 8);
  EXPECT_EQ(fork.length, 4);
  EXPECT_TRUE(torch::equal(fork.keys(0), k_before));
  EXPECT_TRUE(torch::equal(ctx.keys(0).narrow(2, 0, 4), k_before));
}

// --dtype bf16 on a CPU without bf16 GEMM kernels (bf16 decoder linears over fp32 compute) keeps
// the context bf16 (nn::kv_cache_dtype), as Janus's cache: the prefill's keys and values are
// stored rounded, a query that leaves the context unchanged (the flow steps) reads it widened, and
// both stay within bf16 rounding of the fp32 model.
TEST_F(BagelMoT, Bf16LinearsKeepABf16Context) {
  c10::InferenceMode g;
  Fix f("edit.safetensors");
  auto lm16 = load_tiny_llm();
  const auto& cfg = lm16->cfg;
  EXPECT_EQ(nn::narrow_linears_bf16(*lm16, "model.layers."), 14 * cfg.llm.num_hidden_layers);
  auto& lm32 = tiny_llm();
  auto ids = torch::tensor({501, 97, 98, 502}, torch::kLong);
  auto x = f("vae_block_llm_input");
  const int64_t T = x.size(0);
  torch::Tensor h[2];
  nn::KVContext ctxs[2];
  for (int i = 0; i < 2; ++i) {
    auto& m = i == 0 ? lm32->model : lm16->model;
    ctxs[i] = m->make_context();
    m->forward_inference(m->embed(ids), torch::arange(4, torch::kLong), ctxs[i], nn::TokenRoute::understanding(), true,
                         true);
    // the image block against the context, leaving it unchanged
    h[i] = m->forward_inference(x, f("vae_block_position_ids") + 4, ctxs[i], nn::TokenRoute::gen_range(T, 1, T - 1),
                                false, false);
    EXPECT_EQ(ctxs[i].length, 4);
  }
  EXPECT_EQ(ctxs[0].keys(0).scalar_type(), torch::kFloat32);
  EXPECT_EQ(ctxs[1].keys(0).scalar_type(), torch::kBFloat16);
  EXPECT_EQ(ctxs[1].values(cfg.llm.num_hidden_layers - 1).scalar_type(), torch::kBFloat16);
  EXPECT_EQ(h[1].scalar_type(), torch::kFloat32);
  for (int64_t l = 0; l < cfg.llm.num_hidden_layers; ++l) {
    const auto k32 = ctxs[0].keys(l), k16 = ctxs[1].keys(l).to(torch::kFloat32);
    const double rel = ((k16 - k32).norm() / k32.norm()).item<double>();
    EXPECT_LT(rel, 1e-2) << "layer " << l;
    EXPECT_GT(rel, 0) << "layer " << l;  // the bf16 weights and cache did round
  }
  const double rel = ((h[1] - h[0]).norm() / h[0].norm()).item<double>();
  EXPECT_LT(rel, 2e-2);
  EXPECT_GT(rel, 0);
}

// cached_then_fresh: the cache's positions widened to the new rows' dtype, then the new rows.
TEST(KVCache, CachedThenFreshWidensTheCachedPositions) {
  auto fresh = torch::randn({1, 2, 3, 4});
  auto cached = torch::randn({1, 2, 5, 4}).to(torch::kBFloat16);
  auto both = nn::cached_then_fresh(cached, fresh);
  EXPECT_EQ(both.scalar_type(), torch::kFloat32);
  ASSERT_EQ(both.sizes(), torch::IntArrayRef({1, 2, 8, 4}));
  EXPECT_TRUE(torch::equal(both.narrow(2, 0, 5), cached.to(torch::kFloat32)));
  EXPECT_TRUE(torch::equal(both.narrow(2, 5, 3), fresh));
  EXPECT_TRUE(torch::equal(nn::cached_then_fresh(fresh, fresh), torch::cat({fresh, fresh}, 2)));
}
