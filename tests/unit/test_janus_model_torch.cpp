// Janus-Pro against the official-code golden fixtures (tests/fixtures/janus_tiny): config parsing,
// strict loading, understanding path (SigLIP, aligner, inputs_embeds, LM logits, greedy decode)
// and the training losses. Tolerances are those of the fixture README §4.
#include <gtest/gtest.h>

#include "omni/generate/random.h"

#include "alignment_util.h"
#include "janus_test_util.h"
#include "omni/core/error.h"
#include "omni/io/hf_config.h"
#include "omni/io/module_loader_torch.h"

using namespace omni;
using namespace omni::testing;
using omni::models::janus::JanusConfig;
using omni::models::janus::JanusModel;

namespace {
const char* kFixU = "understanding.safetensors";
const char* kFixL = "losses.safetensors";

struct JanusTiny : ::testing::Test {
  void SetUp() override { torch::set_num_threads(1); }  // the fixtures were made with 1 thread
};
}  // namespace

TEST(JanusConfig, ParsesTinyFixture) {
  auto c = JanusConfig::from_file(janus_tiny_dir() + "/config.json");
  EXPECT_EQ(c.language.hidden_size, 64);
  EXPECT_EQ(c.language.num_hidden_layers, 2);
  EXPECT_EQ(c.language.num_attention_heads, 4);
  EXPECT_EQ(c.language.num_key_value_heads, 2);
  EXPECT_EQ(c.language.head_dim, 16);
  EXPECT_EQ(c.language.vocab_size, 2048);
  EXPECT_DOUBLE_EQ(c.language.rms_norm_eps, 1e-6);
  EXPECT_DOUBLE_EQ(c.language.rope_theta, 10000.0);
  EXPECT_FALSE(c.language.tie_word_embeddings);
  EXPECT_EQ(c.vision.vit.width, 32);
  EXPECT_EQ(c.vision.vit.depth, 2);
  EXPECT_EQ(c.vision.vit.heads, 2);
  EXPECT_EQ(c.vision.vit.mlp_hidden, 128);
  EXPECT_EQ(c.vision.vit.num_patches(), 576);
  EXPECT_EQ(c.gen_vision.vq.ch, 32);
  EXPECT_EQ(c.gen_vision.vq.encoder_ch_mult, (std::vector<int64_t>{1, 1, 1, 1, 2}));
  EXPECT_EQ(c.gen_vision.vq.z_channels, 48);
  EXPECT_EQ(c.gen_vision.vq.codebook_size, 16384);
  EXPECT_EQ(c.gen_vision.vq.downsample_factor(), 16);
  EXPECT_EQ(c.gen_head.image_token_embed, 48);
  EXPECT_EQ(c.aligner.depth, 2);
}

TEST(JanusConfig, OfficialTablesForTheRealModel) {
  // Janus-Pro-1B layout: sizes come only from the official tables and class defaults.
  const std::string text = R"({
    "model_type": "multi_modality",
    "language_config": {"hidden_size": 2048, "intermediate_size": 5632, "max_position_embeddings": 16384,
                        "model_type": "llama", "num_attention_heads": 16, "num_hidden_layers": 24,
                        "num_key_value_heads": 16, "torch_dtype": "bfloat16", "vocab_size": 102400},
    "vision_config": {"cls": "CLIPVisionTower", "model_type": "vision",
                      "params": {"image_size": 384, "model_name": "siglip_large_patch16_384",
                                 "select_feature": "same", "select_layer": -1}},
    "aligner_config": {"cls": "MlpProjector", "model_type": "aligner",
                       "params": {"depth": 2, "input_dim": 1024, "n_embed": 2048, "projector_type": "mlp_gelu"}},
    "gen_vision_config": {"cls": "VQ-16", "model_type": "gen_vision", "params": {"image_token_size": 16384, "n_embed": 8}},
    "gen_aligner_config": {"cls": "MlpProjector", "model_type": "gen_aligner",
                           "params": {"depth": 2, "input_dim": 8, "n_embed": 2048, "projector_type": "mlp_gelu"}},
    "gen_head_config": {"cls": "vision_head", "model_type": "gen_head",
                        "params": {"image_token_embed": 2048, "image_token_size": 16384, "n_embed": 2048}}
  })";
  auto c = JanusConfig::from_hf(io::HfConfig::from_string(text, "janus-pro-1b.json"));
  EXPECT_EQ(c.vision.vit.width, 1024);
  EXPECT_EQ(c.vision.vit.depth, 24);
  EXPECT_EQ(c.vision.vit.heads, 16);
  EXPECT_EQ(c.vision.vit.patch_size, 16);
  EXPECT_EQ(c.vision.vit.mlp_hidden, 4096);
  EXPECT_EQ(c.vision.vit.num_patches(), 576);
  EXPECT_EQ(c.gen_vision.vq.ch, 128);
  EXPECT_EQ(c.gen_vision.vq.encoder_ch_mult, (std::vector<int64_t>{1, 1, 2, 2, 4}));
  EXPECT_EQ(c.gen_vision.vq.z_channels, 256);
  EXPECT_EQ(c.gen_vision.vq.codebook_embed_dim, 8);
  EXPECT_EQ(c.language.head_dim, 128);
  EXPECT_EQ(c.language.num_key_value_heads, 16);
  EXPECT_EQ(c.language.max_position_embeddings, 16384);

}

TEST(JanusConfig, RejectsUnknownSiglip) {
  const std::string text = R"({"model_type": "multi_modality", "language_config": {},
    "vision_config": {"cls": "CLIPVisionTower", "params": {"model_name": "siglip_huge"}}})";
  EXPECT_THROW(JanusConfig::from_hf(io::HfConfig::from_string(text, "x.json")), omni::Error);
}

TEST(JanusModel, LoadsTinyStrictly) {
  auto& m = janus_tiny();
  auto ckpt = io::Checkpoint::open(janus_tiny_dir() + "/model.safetensors");
  size_t n = 0;
  for (const auto& [name, t] : io::named_state(*m.net())) {
    ASSERT_TRUE(ckpt.contains(name)) << name;
    ++n;
  }
  // 416 tensors in the file; the 13 attn_pool.* tensors are the only ones not in the module tree.
  EXPECT_EQ(n, ckpt.tensors().size() - 13);
  EXPECT_EQ(ckpt.tensors().size(), 416u);
}

TEST_F(JanusTiny, JanusUnderstandingVisionAndEmbeds) {
  auto& m = janus_tiny();
  auto pixels = janus_fixture(kFixU, "pixel_values");
  auto feats = m.vision_features(pixels.select(1, 0));
  expect_close("vision_features", feats, janus_fixture(kFixU, "vision_features"), 1e-4, 1e-4);
  auto aligned = m.align(feats);
  expect_close("aligned_image_embeds", aligned, janus_fixture(kFixU, "aligned_image_embeds"), 1e-4, 1e-4);
  auto embeds = m.prepare_inputs_embeds(janus_fixture(kFixU, "input_ids"), pixels, janus_fixture(kFixU, "images_seq_mask"),
                                        janus_fixture(kFixU, "images_emb_mask"));
  expect_close("inputs_embeds", embeds, janus_fixture(kFixU, "inputs_embeds"), 1e-4, 1e-4);
}

TEST_F(JanusTiny, JanusUnderstandingLogitsLast8) {
  auto& m = janus_tiny();
  auto embeds = janus_fixture(kFixU, "inputs_embeds");
  auto logits = m.lm_logits(embeds, janus_fixture(kFixU, "attention_mask"));
  expect_close("logits_last8", logits.narrow(1, logits.size(1) - 8, 8), janus_fixture(kFixU, "logits_last8"), 1e-4, 1e-4);
  // Without a mask (all ones here) the result is the same path.
  auto logits2 = m.lm_logits(embeds);
  expect_close("logits_last8 (no mask)", logits2.narrow(1, logits2.size(1) - 8, 8), janus_fixture(kFixU, "logits_last8"),
               1e-4, 1e-4);
}

TEST_F(JanusTiny, JanusUnderstandingGreedy) {
  auto& m = janus_tiny();
  models::janus::TextGenOptions o;
  o.max_new_tokens = 8;
  o.eos_token_ids = {2};
  o.keep_step_logits = true;
  std::vector<int64_t> streamed;
  o.on_token = [&](int64_t t) {
    streamed.push_back(t);
    return true;
  };
  auto r = m.understand(janus_fixture(kFixU, "inputs_embeds"), o, janus_fixture(kFixU, "attention_mask"));
  auto want = janus_fixture(kFixU, "greedy_tokens");  // [1, 8]
  ASSERT_EQ(static_cast<int64_t>(r.tokens.size()), want.size(1)) << r.stop_reason;
  expect_equal_ints("greedy_tokens", torch::tensor(r.tokens).view({1, -1}), want);
  EXPECT_EQ(streamed, r.tokens);
  EXPECT_EQ(r.stop_reason, "max_new_tokens");
  expect_close("greedy_step_logits", r.step_logits.unsqueeze(1), janus_fixture(kFixU, "greedy_step_logits"), 1e-4, 1e-4);
  expect_close("logits_last (step 8)", r.logits_last, janus_fixture(kFixU, "greedy_step_logits")[7][0], 1e-4, 1e-4);

  // Without the attention mask: same tokens (no padding anywhere).
  o.on_token = nullptr;
  auto r2 = m.understand(janus_fixture(kFixU, "inputs_embeds"), o);
  EXPECT_EQ(r2.tokens, r.tokens);
}

TEST_F(JanusTiny, JanusUnderstandingStopsAtEos) {
  auto& m = janus_tiny();
  models::janus::TextGenOptions o;
  o.max_new_tokens = 8;
  o.eos_token_ids = {790};  // the 7th greedy token
  auto r = m.understand(janus_fixture(kFixU, "inputs_embeds"), o);
  EXPECT_EQ(r.stop_reason, "eos");
  EXPECT_EQ(r.tokens, (std::vector<int64_t>{1683, 82, 1344, 1720, 518, 643, 790}));
}

TEST_F(JanusTiny, JanusUnderstandingSampledIsSeeded) {
  auto& m = janus_tiny();
  models::janus::TextGenOptions o;
  o.max_new_tokens = 6;
  o.temperature = 0.7;
  o.top_p = 0.95;
  // The same seed gives the same draws; the draws come from the request's generator only.
  at::Generator rng = omni::generate::make_generator(torch::kCPU, 42);
  o.generator = &rng;
  auto a = m.understand(janus_fixture(kFixU, "inputs_embeds"), o);
  at::Generator rng2 = omni::generate::make_generator(torch::kCPU, 42);
  o.generator = &rng2;
  torch::manual_seed(7);  // the global generator plays no part
  auto b = m.understand(janus_fixture(kFixU, "inputs_embeds"), o);
  EXPECT_EQ(a.tokens, b.tokens);
  o.generator = nullptr;
  EXPECT_THROW(m.understand(janus_fixture(kFixU, "inputs_embeds"), o), omni::Error);  // sampling needs one
  EXPECT_EQ(a.tokens.size(), 6u);
}

TEST_F(JanusTiny, JanusLossesUnderstanding) {
  auto& m = janus_tiny();
  auto embeds = m.prepare_inputs_embeds(janus_fixture(kFixL, "und_input_ids"), janus_fixture(kFixU, "pixel_values"),
                                        janus_fixture(kFixL, "und_images_seq_mask"), janus_fixture(kFixL, "und_images_emb_mask"));
  torch::NoGradGuard ng;
  auto r = m.text_loss(embeds, janus_fixture(kFixL, "und_labels"), janus_fixture(kFixL, "und_attention_mask"));
  expect_close("und_loss", r.loss, janus_fixture(kFixL, "und_loss"), 1e-4);
  expect_close("und_token_ce", r.token_ce, janus_fixture(kFixL, "und_token_ce"), 1e-4);
}

TEST_F(JanusTiny, JanusLossesGeneration) {
  auto& m = janus_tiny();
  torch::NoGradGuard ng;
  auto r = m.image_gen_loss(janus_fixture(kFixL, "gen_prompt_ids"), janus_fixture(kFixL, "gen_image_codes"));
  expect_close("gen_logits_first4", r.logits[0].narrow(0, 0, 4), janus_fixture(kFixL, "gen_logits_first4"), 1e-4, 1e-4);
  expect_close("gen_loss", r.loss, janus_fixture(kFixL, "gen_loss"), 1e-4);
  expect_close("gen_token_ce", r.token_ce, janus_fixture(kFixL, "gen_token_ce"), 1e-4);
}

TEST_F(JanusTiny, JanusBf16SmokeLogits) {
  // bf16 weights/activations (RMSNorm and softmax in float32): logits close to the fp32 fixture.
  JanusModel::LoadOptions lo;
  lo.dtype = torch::kBFloat16;
  auto m = JanusModel::load(janus_tiny_dir(), lo);
  EXPECT_EQ(m->dtype(), torch::kBFloat16);
  EXPECT_EQ(torch::get_default_dtype(), caffe2::TypeMeta::Make<float>());  // restored after load
  auto logits = m->lm_logits(janus_fixture(kFixU, "inputs_embeds").to(torch::kBFloat16));
  auto s = diff_stats(logits.narrow(1, logits.size(1) - 8, 8), janus_fixture(kFixU, "logits_last8"));
  print_stats("bf16 logits_last8", s, "info; bf16 rounding");
  EXPECT_LT(s.max_abs, 0.25);
}
