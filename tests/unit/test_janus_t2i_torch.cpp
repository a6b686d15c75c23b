// Janus-Pro text-to-image against the official generation_inference.generate() fixtures
// (tests/fixtures/janus_tiny/t2i.safetensors): CFG rows, a teacher-forced CFG loop compared step by
// step, decode_code, the uint8 post-processing, and the free-running sampled loop with
// torch::manual_seed(12345).
#include <gtest/gtest.h>
#include <torch/version.h>

#include "omni/generate/random.h"

#include "alignment_util.h"
#include "janus_test_util.h"
#include "omni/io/image.h"

using namespace omni;
using namespace omni::testing;
using omni::models::janus::ImageGenOptions;
using omni::models::janus::JanusModel;

namespace {
const char* kFixT = "t2i.safetensors";
constexpr int64_t kPad = 3;  // <｜▁pad▁｜> of the tiny tokenizer

std::vector<int64_t> prompt_ids() {
  auto t = janus_fixture(kFixT, "prompt_ids").to(torch::kInt64).contiguous();
  return std::vector<int64_t>(t.data_ptr<int64_t>(), t.data_ptr<int64_t>() + t.numel());
}

struct JanusTinyT2I : ::testing::Test {
  void SetUp() override { torch::set_num_threads(1); }
};
}  // namespace

TEST(JanusT2I, CfgRowsMatchOfficial) {
  auto rows = JanusModel::cfg_rows(prompt_ids(), kPad, 2);
  expect_equal_ints("cfg_input_tokens", rows, janus_fixture(kFixT, "cfg_input_tokens"));
  EXPECT_EQ(rows.scalar_type(), torch::kInt32);
}

TEST_F(JanusTinyT2I, JanusT2ITeacherForced) {
  auto& m = janus_tiny();
  auto gen = janus_fixture(kFixT, "generated_tokens");  // int32 [2, 576]
  const int64_t P = gen.size(0), N = gen.size(1);
  auto step_idx = janus_fixture(kFixT, "raw_logits_step_index");
  std::vector<int64_t> raw_steps(step_idx.data_ptr<int64_t>(), step_idx.data_ptr<int64_t>() + step_idx.numel());

  auto chosen = torch::zeros({P, N});
  auto argmax = torch::zeros({P, N}, torch::kInt64);
  auto lse = torch::zeros({P, N});
  std::vector<torch::Tensor> raw(raw_steps.size());
  auto forced = gen.to(torch::kInt64);

  ImageGenOptions o;
  o.parallel_size = P;
  o.cfg_weight = 5.0;
  o.temperature = 1.0;
  o.image_size = 384;
  o.progress = false;
  o.forced_tokens = gen;
  o.on_step = [&](int64_t i, const torch::Tensor& raw_logits, const torch::Tensor& guided) {
    auto scaled = guided / o.temperature;
    auto logp = torch::log_softmax(scaled, -1);
    chosen.select(1, i).copy_(logp.gather(1, forced.narrow(1, i, 1)).squeeze(1));
    argmax.select(1, i).copy_(scaled.argmax(-1));
    lse.select(1, i).copy_(torch::logsumexp(scaled, -1));
    for (size_t k = 0; k < raw_steps.size(); ++k)
      if (raw_steps[k] == i) raw[k] = raw_logits.clone();
  };
  auto r = m.generate_image_tokens(prompt_ids(), kPad, o);
  expect_equal_ints("teacher-forced tokens", r.tokens, gen);
  EXPECT_EQ(r.grid, 24);
  expect_close("chosen_logprob", chosen, janus_fixture(kFixT, "chosen_logprob"), 5e-4);
  expect_close("cfg_logsumexp", lse, janus_fixture(kFixT, "cfg_logsumexp"), 5e-4);
  // README: exact wherever cfg_top2_margin >= 1e-4 (that is everywhere).
  auto margin_small = janus_fixture(kFixT, "cfg_top2_margin") < 1e-4;
  expect_equal_ints("cfg_argmax", argmax, janus_fixture(kFixT, "cfg_argmax"), margin_small);
  auto want_raw = janus_fixture(kFixT, "raw_logits_steps");  // [3, 4, 16384]
  for (size_t k = 0; k < raw_steps.size(); ++k) {
    ASSERT_TRUE(raw[k].defined());
    expect_close("raw_logits_steps[" + std::to_string(raw_steps[k]) + "]", raw[k], want_raw[k], 1e-4, 1e-4);
  }
}

TEST_F(JanusTinyT2I, JanusT2IDecodeCode) {
  auto& m = janus_tiny();
  auto gen = janus_fixture(kFixT, "generated_tokens");
  auto dec = m.decode_image_tokens(gen, 24);
  expect_close_mean("decoded", dec, janus_fixture(kFixT, "decoded"), 1e-3, 1e-5);
  auto u8 = JanusModel::to_uint8_images(dec);  // [2, 384, 384, 3]
  for (int i = 0; i < 2; ++i) {
    auto img = io::read_image(janus_tiny_dir() + "/t2i_image_" + std::to_string(i) + ".png");
    auto want = torch::from_blob(img.rgb.data(), {img.height, img.width, 3}, torch::kUInt8).clone();
    auto d = (u8[i].to(torch::kInt32) - want.to(torch::kInt32)).abs();
    const int64_t mx = d.max().item<int64_t>(), n_off = (d > 0).sum().item<int64_t>();
    std::cout << "[align] t2i_image_" << i << ".png max_abs=" << mx << " pixels_off=" << n_off << "  [<= 1]" << std::endl;
    EXPECT_LE(mx, 1);
  }
}

TEST_F(JanusTinyT2I, JanusT2IFreeRunningSeed12345) {
  // torch.manual_seed(12345) right before the official loop; torch.multinomial on the CPU draws
  // exponential_ over the whole [P, V] probability matrix per step (torch 1.13), so the stream is
  // reproduced when libtorch is the same version and the probabilities agree to a few ulp.
#if TORCH_VERSION_MAJOR >= 2
  // libtorch 2.x's CPU exponential_ draws another stream (MKL's VSL in the x86 wheels), so the
  // fixture's sampled tokens are 1.13's only. The teacher-forced tests above hold on every version.
  GTEST_SKIP() << "the fixture's sampled tokens follow libtorch 1.13's CPU random stream (this is " << TORCH_VERSION << ")";
#endif
  auto& m = janus_tiny();
  ImageGenOptions o;
  o.parallel_size = 2;
  o.cfg_weight = 5.0;
  o.temperature = 1.0;
  o.image_size = 384;
  at::Generator rng = omni::generate::make_generator(torch::kCPU, 12345);
  o.generator = &rng;
  o.progress = false;
  auto r = m.generate_image_tokens(prompt_ids(), kPad, o);
  auto want = janus_fixture(kFixT, "generated_tokens");
  auto ne = (r.tokens.to(torch::kInt64) != want.to(torch::kInt64));
  int64_t first = -1;
  for (int64_t p = 0; p < want.size(0); ++p) {
    auto nz = ne[p].nonzero();
    if (nz.size(0) > 0) {
      const int64_t f = nz[0][0].item<int64_t>();
      first = first < 0 ? f : std::min(first, f);
    }
  }
  std::cout << "[align] free-running seed 12345: mismatches=" << ne.sum().item<int64_t>() << "/" << ne.numel()
            << " first divergence step=" << first << " (torch " << TORCH_VERSION << ")" << std::endl;
  expect_equal_ints("generated_tokens (free-running, seed 12345)", r.tokens, want);
}
