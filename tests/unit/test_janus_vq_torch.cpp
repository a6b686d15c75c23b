// Janus VQ-16 tokenizer against the official VQModel.encode / decode_code fixtures
// (tests/fixtures/janus_tiny/vq.safetensors).
#include <gtest/gtest.h>

#include "alignment_util.h"
#include "janus_test_util.h"

using namespace omni;
using namespace omni::testing;

namespace {
const char* kFixV = "vq.safetensors";
struct JanusTinyVQ : ::testing::Test {
  void SetUp() override { torch::set_num_threads(1); }
};
}  // namespace

TEST_F(JanusTinyVQ, JanusVQEncode) {
  auto& m = janus_tiny();
  auto x = janus_fixture("understanding.safetensors", "pixel_values").select(1, 0);
  auto e = m.vq_encode(x);
  expect_close("h_prequant", e.h_prequant, janus_fixture(kFixV, "h_prequant"), 2e-4);
  expect_close("quant", e.quant, janus_fixture(kFixV, "quant"), 2e-4);
  // Exact wherever the cosine margin between the two nearest codes is >= 1e-4.
  auto ambiguous = janus_fixture(kFixV, "code_cos_margin") < 1e-4;
  expect_equal_ints("codes", e.codes, janus_fixture(kFixV, "codes"), ambiguous);
  std::cout << "distinct codes: " << std::get<0>(torch::_unique(e.codes)).numel() << " (official 465)" << std::endl;
}

TEST_F(JanusTinyVQ, JanusVQDecodeCode) {
  auto& m = janus_tiny();
  auto codes = janus_fixture(kFixV, "codes");
  auto rec = m.decode_code(codes.view({1, -1}), {1, 8, 24, 24});
  expect_close_mean("recon_decode_code", rec, janus_fixture(kFixV, "recon_decode_code"), 1e-3, 1e-5);
}
