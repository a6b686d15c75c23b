// BAGEL text-to-image and editing against the official InterleaveInferencer fixtures
// (tests/fixtures/bagel_tiny/{t2i_cfgimg1.0, t2i_cfgimg1.5, edit}.safetensors; README section 3):
// contexts and caches, every flow step teacher-forced (x_t[i] in, guided velocity and branch
// velocities out), the full loop from the injected init_noise, the VAE decode and the PNG bytes.
#include <gtest/gtest.h>

#include "omni/generate/random.h"

#include <string>

#include "alignment_util.h"
#include "bagel_test_util.h"
#include "omni/io/checkpoint_torch.h"
#include "omni/io/image.h"
#include "omni/models/bagel/inferencer.h"
#include "test_paths.h"

using namespace omni;
using namespace omni::testing;

namespace {
using Fix = BagelFixture;

bagel::BagelInferencer& tiny() {
  static bagel::BagelInferencer inf = bagel::BagelInferencer::load(bagel_dir());
  return inf;
}

struct BagelFlow : ::testing::Test {
  void SetUp() override { torch::set_num_threads(1); }
};

torch::Tensor ids_tensor(const std::vector<int64_t>& v) { return torch::tensor(v, torch::kLong); }

void expect_cache(const nn::KVContext& ctx, const Fix& f, const std::string& prefix) {
  ASSERT_TRUE(f.ck.contains(prefix + "k.0")) << prefix;
  EXPECT_EQ(ctx.length, f(prefix + "k.0").size(0)) << prefix;
  for (int64_t l = 0; l < ctx.layers(); ++l) {
    expect_close(prefix + "k." + std::to_string(l), ctx.keys(l)[0].transpose(0, 1), f(prefix + "k." + std::to_string(l)), 1e-4);
    expect_close(prefix + "v." + std::to_string(l), ctx.values(l)[0].transpose(0, 1), f(prefix + "v." + std::to_string(l)), 1e-4);
  }
}

// Teacher-forced steps, then the free-running loop, decode and the uint8 image.
void check_flow(bagel::BagelInferencer& inf, const Fix& f, const bagel::FlowContexts& ctxs,
                const bagel::FlowOptions& o, int H, int W, const std::string& png_u8_name) {
  auto x_t = f("x_t"), v = f("v"), t = f("t"), ran = f("branch_ran");
  auto ts = bagel::flow_timesteps(o.num_timesteps, o.timestep_shift);
  const int64_t steps = x_t.size(0);
  ASSERT_EQ(steps, o.num_timesteps - 1);
  const int64_t ds = inf.config().latent_downsample();
  auto pos_ids = inf.model().latent_position_ids(H / ds, W / ds);
  EXPECT_TRUE(torch::equal(pos_ids, f("query_packed_vae_position_ids")));
  DiffStats worst_v, worst_c, worst_t, worst_i;
  auto track = [](DiffStats& w, const DiffStats& s) {
    if (s.max_abs >= w.max_abs) w = s;
  };
  for (int64_t i = 0; i < steps; ++i) {
    EXPECT_FLOAT_EQ(ts[i], t[i].item<float>()) << "t[" << i << "]";
    auto g = inf.guided_velocity(ctxs, x_t[i], ts[i], pos_ids, o);
    EXPECT_EQ(g.v_text.defined(), ran[i][1].item<uint8_t>() != 0) << "text branch at step " << i;
    EXPECT_EQ(g.v_img.defined(), ran[i][2].item<uint8_t>() != 0) << "img branch at step " << i;
    EXPECT_FLOAT_EQ(g.text_scale, f("cfg_text_scale_used")[i].item<float>());
    EXPECT_FLOAT_EQ(g.img_scale, f("cfg_img_scale_used")[i].item<float>());
    auto s = diff_stats(g.v, v[i]);
    track(worst_v, s);
    EXPECT_LE(s.max_abs, 1e-5) << "v step " << i;
    s = diff_stats(g.v_cond, f("v_cond")[i]);
    track(worst_c, s);
    EXPECT_LE(s.max_abs, 1e-5) << "v_cond step " << i;
    if (g.v_text.defined()) {
      s = diff_stats(g.v_text, f("v_text_uncond")[i]);
      track(worst_t, s);
      EXPECT_LE(s.max_abs, 1e-5) << "v_text_uncond step " << i;
    }
    if (g.v_img.defined()) {
      s = diff_stats(g.v_img, f("v_img_uncond")[i]);
      track(worst_i, s);
      EXPECT_LE(s.max_abs, 1e-5) << "v_img_uncond step " << i;
    }
  }
  print_stats("v (all steps, teacher-forced)", worst_v, "max_abs 1e-5");
  print_stats("v_cond (all steps)", worst_c, "max_abs 1e-5");
  print_stats("v_text_uncond (steps that ran)", worst_t, "max_abs 1e-5");
  print_stats("v_img_uncond (steps that ran)", worst_i, "max_abs 1e-5");

  torch::Tensor v_first;
  auto latent = inf.gen_image_latents(H, W, ctxs, o, f("init_noise"),
                                      [&](int i, float, const torch::Tensor&, const bagel::GuidedVelocity& g) {
                                        if (i == 0) v_first = g.v.clone();
                                      });
  expect_close("v_first_step", v_first, f("v_first_step"), 1e-5);
  expect_close("final_latent_packed", latent, f("final_latent_packed"), 1e-4);
  auto decoded = inf.decode_latents(latent, H, W);
  expect_close("decoded", decoded, f("decoded"), 2e-4);
  // The PNG mapping on the official decoded tensor: exact; on ours: within 1 LSB.
  auto want_u8 = f(png_u8_name);
  auto exact = bagel::BagelInferencer::to_image(f("decoded"));
  EXPECT_TRUE(torch::equal(torch::from_blob(exact.rgb.data(), {H, W, 3}, torch::kUInt8), want_u8));
  auto img = bagel::BagelInferencer::to_image(decoded);
  auto got = torch::from_blob(img.rgb.data(), {H, W, 3}, torch::kUInt8).to(torch::kInt32);
  auto d = (got - want_u8.to(torch::kInt32)).abs();
  EXPECT_LE(d.max().item<int>(), 1);
  EXPECT_GE((d == 0).to(torch::kFloat64).mean().item<double>(), 0.99);
}

void run_t2i(const std::string& file, double cfg_img_scale) {
  c10::InferenceMode g;
  Fix f(file);
  auto& inf = tiny();
  const std::string prompt = "a red circle on blue";
  auto ids = inf.text_ids(prompt);
  EXPECT_TRUE(torch::equal(ids_tensor(ids), f("text_ids")));
  // interleave_inference on [text]: cfg_text = gen before the text; gen and cfg_img get it.
  auto gen = inf.new_context();
  auto cfg_text = gen.fork();
  auto cfg_img = inf.new_context();
  inf.update_context_text(gen, prompt);
  inf.update_context_text(cfg_img, prompt);
  EXPECT_EQ(gen.rope, 22);
  EXPECT_EQ(cfg_text.length, 0);
  expect_cache(gen, f, "cache_gen.");
  expect_cache(cfg_img, f, "cache_cfg_img.");
  EXPECT_TRUE(torch::equal(torch::full({26}, gen.rope, torch::kLong), f("query_packed_position_ids")));
  EXPECT_TRUE(torch::equal(torch::full({26}, cfg_text.rope, torch::kLong), f("cfg_text_query_position_ids")));

  bagel::FlowOptions o;
  o.num_timesteps = 10;
  o.timestep_shift = 3.0;
  o.cfg_text_scale = 4.0;
  o.cfg_img_scale = cfg_img_scale;
  o.cfg_interval = {0.4, 1.0};
  o.cfg_renorm_type = "global";
  o.cfg_renorm_min = 0.0;
  check_flow(inf, f, {&gen, &cfg_text, &cfg_img}, o, 64, 96, "image_u8");
}
}  // namespace

TEST_F(BagelFlow, Schedule) {
  auto ts = bagel::flow_timesteps(10, 3.0);
  ASSERT_EQ(ts.size(), 10u);
  EXPECT_FLOAT_EQ(ts[0], 1.0f);
  EXPECT_FLOAT_EQ(ts[9], 0.0f);
  EXPECT_NEAR(ts[1], 0.96, 1e-6);  // 3 * (8/9) / (1 + 2 * 8/9)
}

TEST_F(BagelFlow, TextToImageCfgImg1) { run_t2i("t2i_cfgimg1.0.safetensors", 1.0); }
TEST_F(BagelFlow, TextToImageCfgImg15) { run_t2i("t2i_cfgimg1.5.safetensors", 1.5); }

TEST_F(BagelFlow, Edit) {
  c10::InferenceMode g;
  Fix f("edit.safetensors");
  auto& inf = tiny();
  auto img = io::read_image(bagel_dir() + "/edit_image.png");
  EXPECT_TRUE(torch::equal(torch::from_blob(img.rgb.data(), {img.height, img.width, 3}, torch::kUInt8), f("image_u8")));
  auto resized = inf.vae_resize(img);
  ASSERT_EQ(resized.width, 64);
  ASSERT_EQ(resized.height, 96);
  EXPECT_TRUE(torch::equal(torch::from_blob(resized.rgb.data(), {96, 64, 3}, torch::kUInt8),
                           f("image_after_vae_resize_u8")));

  // interleave_inference on [image, text] (understanding_output=False): VAE + ViT into gen, then
  // cfg_text = gen; the text into gen and cfg_img.
  auto gen = inf.new_context();
  auto cfg_img = inf.new_context();
  auto blocks = inf.update_context_image(gen, resized, true, true, f("vae_posterior_eps"));
  EXPECT_TRUE(torch::equal(blocks.vae_input, f("vae_input")));
  expect_close("vae_z", blocks.vae_latent, f("vae_z"), 1e-4);
  EXPECT_TRUE(torch::equal(blocks.vit_tokens, f("packed_vit_tokens")));
  auto cfg_text = gen.fork();
  const std::string instr = "make the disc green";
  EXPECT_TRUE(torch::equal(ids_tensor(inf.text_ids(instr)), f("text_ids")));
  inf.update_context_text(gen, instr);
  inf.update_context_text(cfg_img, instr);
  EXPECT_EQ(gen.rope, 23);
  EXPECT_EQ(cfg_text.rope, 2);
  EXPECT_EQ(cfg_img.rope, 21);
  expect_cache(gen, f, "cache_gen.");
  expect_cache(cfg_text, f, "cache_cfg_text.");
  expect_cache(cfg_img, f, "cache_cfg_img.");

  bagel::FlowOptions o;
  o.num_timesteps = 10;
  o.timestep_shift = 3.0;
  o.cfg_text_scale = 4.0;
  o.cfg_img_scale = 2.0;
  o.cfg_interval = {0.0, 1.0};
  o.cfg_renorm_type = "text_channel";
  o.cfg_renorm_min = 0.0;
  check_flow(inf, f, {&gen, &cfg_text, &cfg_img}, o, 96, 64, "image_out_u8");
}

TEST_F(BagelFlow, RejectsBadSizesAndNoise) {
  c10::InferenceMode g;
  auto& inf = tiny();
  auto gen = inf.new_context();
  bagel::FlowOptions o;
  o.num_timesteps = 3;
  EXPECT_THROW(inf.gen_image_latents(60, 96, {&gen, &gen, &gen}, o), Error);   // not a multiple of 16
  EXPECT_THROW(inf.gen_image_latents(256, 96, {&gen, &gen, &gen}, o), Error);  // > max_latent_size 8
  EXPECT_THROW(inf.gen_image_latents(64, 96, {&gen, &gen, &gen}, o, torch::zeros({5, 64})), Error);
  o.cfg_renorm_type = "local";
  EXPECT_THROW(inf.gen_image_latents(64, 96, {&gen, &gen, &gen}, o), Error);
}

// ThinkMorph's interleaved loop with scripted text rounds (random tiny weights never write
// "<image_start>"): each image round adds text + VAE block + ViT block to gen; the loop stops at
// the first round without an image, or after max_rounds images.
TEST_F(BagelFlow, InterleavedReasoningLoop) {
  c10::InferenceMode g;
  auto& inf = tiny();
  auto img = io::read_image(bagel_dir() + "/und_image.png");  // 76x60 -> VAE rule 80x64
  auto run = [&](const std::vector<std::string>& script, int max_rounds, int* draws) {
    auto gen = inf.new_context();
    inf.update_context_text(gen, "q");
    size_t k = 0;
    bagel::InterleavedSteps steps;
    steps.gen_text = [&](const nn::KVContext&) { return script.at(k++); };
    steps.draw = [&](const nn::KVContext& ctx, int round) {
      EXPECT_EQ(round, *draws);
      EXPECT_GT(ctx.length, 0);
      ++*draws;
      return img;
    };
    at::Generator rng = omni::generate::make_generator(torch::kCPU, 5);
    auto texts = bagel::interleaved_reasoning(inf, gen, max_rounds, steps, rng);
    return std::make_pair(texts, gen);
  };
  const std::string a = "<think>a</think><image_start>", b = "<image_end><answer>x</answer>";
  int draws = 0;
  auto [texts, gen] = run({a, a, b}, 3, &draws);
  EXPECT_EQ(draws, 2);
  ASSERT_EQ(texts.size(), 3u);
  EXPECT_EQ(texts.back(), b);
  // positions: "q" block 3, then per text round its ids, each image +1 (VAE) +1 (ViT)
  const int64_t la = static_cast<int64_t>(inf.text_ids(a).size()), lb = static_cast<int64_t>(inf.text_ids(b).size());
  EXPECT_EQ(gen.rope, 3 + la + 2 + la + 2 + lb);
  const int64_t vae_rows = (80 / 16) * (64 / 16) + 2, vit_rows = (84 / 14) * (70 / 14) + 2;  // 80x64 -> ViT 84x70
  EXPECT_EQ(gen.length, 3 + 2 * (la + vae_rows + vit_rows) + lb);
  draws = 0;
  auto [texts3, gen3] = run({a, a, a, a}, 3, &draws);
  EXPECT_EQ(draws, 3);  // max_rounds images, no further text round
  EXPECT_EQ(texts3.size(), 3u);
}
