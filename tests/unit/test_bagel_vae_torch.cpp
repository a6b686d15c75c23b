// BAGEL's FLUX autoencoder against the official AutoEncoder fixtures
// (tests/fixtures/bagel_tiny/vae.safetensors, ae.safetensors; README section 3 "vae.safetensors").
#include <gtest/gtest.h>

#include <map>
#include <string>

#include "alignment_util.h"
#include "omni/core/error.h"
#include "omni/io/checkpoint_torch.h"
#include "omni/io/module_loader_torch.h"
#include "omni/models/bagel/config.h"
#include "omni/nn/flux_vae.h"
#include "test_paths.h"

using namespace omni;
using namespace omni::testing;

namespace {
std::string bagel_dir() { return std::string(OMNI_FIXTURES) + "/bagel_tiny"; }

torch::Tensor vae_fix(const std::string& name) {
  static io::Checkpoint ck = io::Checkpoint::open(bagel_dir() + "/vae.safetensors");
  return ck.get(name).clone();
}

nn::FluxVaeConfig tiny_cfg() { return bagel::vae_config_from(bagel_dir() + "/bagel_config.json"); }

nn::FluxAutoEncoderImpl& tiny_vae() {
  static std::shared_ptr<nn::FluxAutoEncoderImpl> m = nn::FluxAutoEncoderImpl::load(bagel_dir() + "/ae.safetensors", tiny_cfg());
  return *m;
}

struct BagelVae : ::testing::Test {
  void SetUp() override { torch::set_num_threads(1); }
};
}  // namespace

TEST_F(BagelVae, ConfigFromBagelJson) {
  auto c = tiny_cfg();
  EXPECT_EQ(c.ch, 32);
  EXPECT_EQ(c.ch_mult, (std::vector<int64_t>{1, 1, 2, 2}));
  EXPECT_EQ(c.num_res_blocks, 1);
  EXPECT_EQ(c.z_channels, 16);
  EXPECT_EQ(c.downsample_factor(), 8);
  EXPECT_DOUBLE_EQ(c.scale_factor, 0.3611);
  EXPECT_DOUBLE_EQ(c.shift_factor, 0.1159);
  nn::FluxVaeConfig real;  // defaults: the released FLUX VAE
  EXPECT_EQ(real.ch, 128);
  EXPECT_EQ(real.ch_mult, (std::vector<int64_t>{1, 2, 4, 4}));
  EXPECT_EQ(real.num_res_blocks, 2);
}

TEST_F(BagelVae, LoadsEveryTensorExactly) {
  auto& m = tiny_vae();
  auto ck = io::Checkpoint::open(bagel_dir() + "/ae.safetensors");
  auto state = io::named_state(m);
  EXPECT_EQ(state.size(), ck.tensors().size());  // 176
  for (auto& [name, t] : state) {
    ASSERT_TRUE(ck.contains(name)) << name;
    EXPECT_TRUE(torch::equal(t, ck.get(name))) << name;
  }
}

TEST_F(BagelVae, StrictLoadRejectsMismatch) {
  auto ck = io::Checkpoint::open(bagel_dir() + "/ae.safetensors");
  {  // a second res block per level: encoder.down.0.block.1.* is not in the file
    auto c = tiny_cfg();
    c.num_res_blocks = 2;
    nn::FluxAutoEncoder m(c);
    try {
      io::load_module(*m, ck);
      FAIL() << "expected omni::Error";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find("block.1"), std::string::npos) << e.what();
    }
  }
  {  // wrong width: every conv has the wrong shape
    auto c = tiny_cfg();
    c.ch = 64;
    nn::FluxAutoEncoder m(c);
    EXPECT_THROW(io::load_module(*m, ck), Error);
  }
}

TEST_F(BagelVae, EncoderMoments) {
  auto& m = tiny_vae();
  torch::NoGradGuard ng;
  auto x = vae_fix("x");
  auto moments = m.encoder->forward(x);
  expect_close("vae/moments", moments, vae_fix("moments"), 1e-4);
  auto [mean, logvar] = m.encode_moments(x);
  expect_close("vae/posterior_mean", mean, vae_fix("posterior_mean"), 1e-4);
  expect_close("vae/posterior_logvar", logvar, vae_fix("posterior_logvar"), 1e-4);
}

TEST_F(BagelVae, EncodeWithInjectedEps) {
  auto& m = tiny_vae();
  torch::NoGradGuard ng;
  auto x = vae_fix("x");
  expect_close("vae/z", m.encode(x, vae_fix("posterior_eps")), vae_fix("z"), 1e-4);
  expect_close("vae/z_from_mean", m.encode_mean(x), vae_fix("z_from_mean"), 1e-4);
  // The posterior step alone, from the official moments: only elementwise float32 rounding.
  auto z = m.sample_latent(vae_fix("posterior_mean"), vae_fix("posterior_logvar"), vae_fix("posterior_eps"));
  expect_close("vae/z (from official moments)", z, vae_fix("z"), 1e-6);
  EXPECT_THROW(m.encode(x, torch::zeros({1, 16, 4, 4})), Error);
}

TEST_F(BagelVae, Decode) {
  auto& m = tiny_vae();
  torch::NoGradGuard ng;
  expect_close("vae/decoded", m.decode(vae_fix("z")), vae_fix("decoded"), 2e-4);
  expect_close("vae/decoded_from_mean", m.decode(vae_fix("z_from_mean")), vae_fix("decoded_from_mean"), 2e-4);
}

// The mid-block attention runs in query chunks once hw^2 scores exceed ~128 MB (a 1024^2 decode);
// the chunked result equals the one-shot softmax(q k^T / sqrt(c)) v.
TEST_F(BagelVae, AttentionInChunksMatchesOneShot) {
  torch::manual_seed(0);
  nn::VQAttnBlock blk(32);
  torch::NoGradGuard ng;
  for (auto& p : blk->parameters()) p.normal_(0, 0.2);
  auto x = torch::randn({1, 32, 78, 78});  // hw = 6084: 6084^2 scores > the 32 Mi-float budget
  auto got = blk->forward(x);
  auto h_ = blk->norm->forward(x);
  auto q = blk->q->forward(h_).reshape({1, 32, -1}).permute({0, 2, 1});
  auto k = blk->k->forward(h_).reshape({1, 32, -1});
  auto v = blk->v->forward(h_).reshape({1, 32, -1});
  auto w = torch::softmax(torch::bmm(q, k) / std::sqrt(32.0), 2);
  auto want = x + blk->proj_out->forward(torch::bmm(v, w.permute({0, 2, 1})).reshape({1, 32, 78, 78}));
  expect_close("attn chunked vs one-shot", got, want, 1e-5);
}
