// BAGEL's ImageTransform (src/omni/models/bagel/image_transform.h) against the official
// data.transforms.ImageTransform outputs in tests/fixtures/bagel_tiny/transforms.safetensors
// (README "transforms.safetensors"): for every case the size rule, the PIL-bicubic resize (u8,
// exact) and the ToTensor + Normalize tensor (exact).
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cstdio>
#include <cstring>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "alignment_util.h"
#include "omni/core/error.h"
#include "omni/io/image.h"
#include "omni/io/safetensors.h"
#include "omni/models/bagel/image_transform.h"
#include "test_paths.h"

using namespace omni;
using nlohmann::json;

namespace {

std::shared_ptr<io::SafetensorsFile> fixture() {
  static auto f =
      io::SafetensorsFile::open(std::string(OMNI_FIXTURES) + "/bagel_tiny/transforms.safetensors");
  return f;
}

// A [H, W, 3] u8 fixture tensor as an io::Image.
io::Image u8_image(const std::string& name) {
  auto f = fixture();
  const auto& info = f->info(name);
  EXPECT_EQ(info.dtype, DType::U8) << name;
  EXPECT_EQ(info.shape.size(), 3u) << name;
  EXPECT_EQ(info.shape[2], 3) << name;
  io::Image im(static_cast<int>(info.shape[1]), static_cast<int>(info.shape[0]));
  std::memcpy(im.rgb.data(), f->data(name), im.rgb.size());
  return im;
}

torch::Tensor f32_tensor(const std::string& name) {
  auto f = fixture();
  const auto& info = f->info(name);
  EXPECT_EQ(info.dtype, DType::F32) << name;
  auto t = torch::empty(info.shape, torch::kFloat32);
  std::memcpy(t.data_ptr<float>(), f->data(name), info.nbytes);
  return t;
}

int max_u8_diff(const io::Image& a, const io::Image& b, int* mismatches) {
  int worst = 0;
  *mismatches = 0;
  for (size_t i = 0; i < a.rgb.size(); ++i) {
    const int d = std::abs(int(a.rgb[i]) - int(b.rgb[i]));
    worst = std::max(worst, d);
    *mismatches += d != 0;
  }
  return worst;
}

struct Case {
  std::string name;
  bagel::ImageTransformParams p;
  int img_num;
  int in_w, in_h, out_w, out_h;
};

std::vector<Case> cases() {
  const json j = json::parse(fixture()->metadata().at("cases"));
  std::vector<Case> out;
  for (auto it = j.begin(); it != j.end(); ++it) {
    const json& a = it.value().at("args(max,min,stride,max_pixels)");
    Case c;
    c.name = it.key();
    c.p.max_image_size = a.at(0).get<int>();
    c.p.min_image_size = a.at(1).get<int>();
    c.p.image_stride = a.at(2).get<int>();
    c.p.max_pixels = a.at(3).get<int64_t>();
    c.img_num = it.value().at("img_num").get<int>();
    c.in_w = it.value().at("in_WxH").at(0).get<int>();
    c.in_h = it.value().at("in_WxH").at(1).get<int>();
    c.out_w = it.value().at("out_WxH").at(0).get<int>();
    c.out_h = it.value().at("out_WxH").at(1).get<int>();
    out.push_back(c);
  }
  return out;
}

}  // namespace

TEST(BagelTransforms, FixtureSizesResizeAndTensorExact) {
  const auto all = cases();
  ASSERT_EQ(all.size(), 9u);
  int tensors_checked = 0;
  for (const Case& c : all) {
    SCOPED_TRACE(c.name);
    const auto [w, h] = bagel::transform_size(c.in_w, c.in_h, c.p, c.img_num);
    EXPECT_EQ(w, c.out_w);
    EXPECT_EQ(h, c.out_h);

    const io::Image in = u8_image(c.name + ".input_u8");
    ASSERT_EQ(in.width, c.in_w);
    ASSERT_EQ(in.height, c.in_h);
    const io::Image want = u8_image(c.name + ".resized_u8");
    const io::Image got = bagel::resize_for_transform(in, c.p, c.img_num);
    ASSERT_EQ(got.width, want.width);
    ASSERT_EQ(got.height, want.height);
    int mism = 0;
    const int worst = max_u8_diff(got, want, &mism);
    std::printf("[align] %s %dx%d -> %dx%d resized_u8 max_abs=%d (%d of %zu differ)\n",
                c.name.c_str(), c.in_w, c.in_h, got.width, got.height, worst, mism, want.rgb.size());
    EXPECT_EQ(worst, 0);

    if (fixture()->contains(c.name + ".tensor")) {
      const torch::Tensor ref = f32_tensor(c.name + ".tensor");
      const torch::Tensor t = bagel::image_transform(in, c.p, c.img_num);
      ASSERT_EQ(t.dtype(), torch::kFloat32);
      omni::testing::expect_close(c.name + ".tensor", t, ref, 0.0);
      EXPECT_TRUE(torch::equal(t, ref));
      EXPECT_TRUE(torch::equal(bagel::image_transform_tensor(want), ref));
      ++tensors_checked;
    }
  }
  EXPECT_EQ(tensors_checked, 8);  // every case but the RGBA one stores its tensor
}

// pil_img2rgb then the official ViT transform, from the raw RGBA pixels.
TEST(BagelTransforms, RgbaCaseEndToEnd) {
  auto f = fixture();
  const auto& info = f->info("rgba_input_u8");
  ASSERT_EQ(info.shape, (std::vector<int64_t>{16, 20, 4}));
  const io::Image comp = io::composite_rgba(f->data("rgba_input_u8"), 20, 16);
  EXPECT_EQ(comp.rgb, u8_image("rgba_composited_official_vit.input_u8").rgb);
  const io::Image r = bagel::resize_for_transform(comp, {980, 224, 14});
  EXPECT_EQ(r.width, 280);
  EXPECT_EQ(r.height, 224);
  int mism = 0;
  const int worst = max_u8_diff(r, u8_image("rgba_composited_official_vit.resized_u8"), &mism);
  std::printf("[align] rgba composited + vit resize max_abs=%d (%d differ)\n", worst, mism);
  EXPECT_EQ(worst, 0);
}

// ToTensor (float32(u8) / 255 in float32) + Normalize ((x - 0.5f) / 0.5f), all 256 values.
TEST(BagelTransforms, TensorRuleExhaustive) {
  io::Image im(256, 1);
  for (int v = 0; v < 256; ++v) im.rgb[3 * v] = im.rgb[3 * v + 1] = im.rgb[3 * v + 2] = uint8_t(v);
  const torch::Tensor t = bagel::image_transform_tensor(im);
  ASSERT_EQ(t.sizes().vec(), (std::vector<int64_t>{3, 1, 256}));
  int bad = 0;
  auto acc = t.accessor<float, 3>();
  for (int c = 0; c < 3; ++c)
    for (int v = 0; v < 256; ++v) {
      volatile float x = static_cast<float>(v);
      x = x / 255.0f;
      volatile float y = x - 0.5f;
      y = y / 0.5f;
      bad += acc[c][0][v] != y;
    }
  EXPECT_EQ(bad, 0);
  EXPECT_EQ(acc[0][0][0], -1.0f);
  EXPECT_EQ(acc[0][0][255], 1.0f);
}

TEST(BagelTransforms, SizeRule) {
  using P = bagel::ImageTransformParams;
  const P vae = P::vae(), vit = P::vit();
  EXPECT_EQ(vae.max_pixels, 1806336);
  auto sz = [](int w, int h, const P& p, int n = 1) { return bagel::transform_size(w, h, p, n); };
  using WH = std::pair<int, int>;
  EXPECT_EQ(sz(1024, 1024, vae), WH(1024, 1024));
  EXPECT_EQ(sz(1024, 1024, vit), WH(980, 980));
  // Small images are upscaled so that the short side reaches min_size.
  EXPECT_EQ(sz(1, 1, vit), WH(224, 224));
  EXPECT_EQ(sz(100, 50, vae), WH(1024, 512));  // s = 10.24: 1024 x 512
  // 1024x768 ViT: s = 980/1024, 980 x 735 -> 735/14 = 52.5 rounds to even 52 -> 728.
  EXPECT_EQ(sz(1024, 768, vit), WH(980, 728));
  // Snapping halves go to even: 24/16 = 1.5 -> 2 (32), 40/16 = 2.5 -> 2 (32), 8/16 -> stride.
  P s16{1000, 1, 16};
  EXPECT_EQ(sz(24, 40, s16), WH(32, 32));
  EXPECT_EQ(sz(8, 56, s16), WH(16, 64));  // 56/16 = 3.5 -> 4
  // max_pixels rescales by the pixel ratio itself (not its square root): 80x64 over 4096 gives
  // s = 0.8 -> 64 x 51.2 -> 64 x 48 (3072 px, far under the budget).
  EXPECT_EQ(sz(76, 60, P{128, 64, 16, 4096}), WH(64, 48));
  EXPECT_EQ(sz(76, 60, P{128, 64, 16, 8192}, 2), WH(64, 48));
  // Long edge: the min-size upscale can overshoot max; the last step brings it back.
  EXPECT_EQ(sz(200, 20, P{128, 64, 16}), WH(128, 16));
  // 2048x2048 VAE at the default budget: 1024² > 1806336? no: 1048576 fits.
  EXPECT_EQ(sz(2048, 2048, vae), WH(1024, 1024));
  // Two images share the budget: 1024² > 903168 -> s = 0.861 -> 882 -> 880.
  EXPECT_EQ(sz(1024, 1024, vae, 2), WH(880, 880));

  EXPECT_THROW(sz(0, 10, vae), Error);
  EXPECT_THROW(sz(10, 10, P{128, 64, 0}), Error);
  EXPECT_THROW(sz(10, 10, vae, 0), Error);
}
