// Image → normalised float tensor, checked bit-exactly against the Janus fixture.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cstring>
#include <fstream>
#include <vector>

#include "omni/core/error.h"
#include "omni/io/image.h"
#include "omni/io/image_tensor.h"
#include "test_paths.h"

using namespace omni;
using namespace omni::io;

namespace {
std::string fx(const std::string& name) { return std::string(OMNI_FIXTURES) + "/images/" + name; }
}  // namespace

// janus_pixel_values.f32 is understanding.safetensors:pixel_values[0, 0] (F32 [3,384,384],
// little-endian), from the official VLChatProcessor on janus_test_image.png.
TEST(ImageTensor, JanusPixelValuesBitExact) {
  const Image img = read_image(fx("janus_test_image.png"));
  ASSERT_EQ(img.width, 384);
  ASSERT_EQ(img.height, 384);
  std::ifstream f(fx("janus_pixel_values.f32"), std::ios::binary);
  ASSERT_TRUE(f.good());
  std::vector<float> want(3 * 384 * 384);
  f.read(reinterpret_cast<char*>(want.data()), static_cast<std::streamsize>(want.size() * 4));
  ASSERT_EQ(f.gcount(), static_cast<std::streamsize>(want.size() * 4));

  ImageNormalization norm = ImageNormalization::janus();
  norm.rescale_factor = 0.00392156862745098;  // as written in preprocessor_config.json
  const at::Tensor t = image_to_tensor(img, norm);
  ASSERT_EQ(t.sizes(), (std::vector<int64_t>{3, 384, 384}));
  ASSERT_EQ(t.scalar_type(), torch::kFloat32);
  const float* got = t.data_ptr<float>();
  size_t bad = 0, first = 0;
  for (size_t i = 0; i < want.size(); ++i) {
    uint32_t a, b;
    std::memcpy(&a, &got[i], 4);
    std::memcpy(&b, &want[i], 4);
    if (a != b && bad++ == 0) first = i;
  }
  EXPECT_EQ(bad, 0u) << "first mismatch at " << first << ": " << got[first] << " vs "
                     << want[first];

  // Batched form: same values, [N,3,H,W].
  const at::Tensor b = images_to_tensor({img, img}, norm);
  ASSERT_EQ(b.sizes(), (std::vector<int64_t>{2, 3, 384, 384}));
  EXPECT_TRUE(torch::equal(b[1], t));
}

TEST(ImageTensor, FormulaAndErrors) {
  Image img(2, 1);
  img.rgb = {0, 128, 255, 1, 2, 3};
  ImageNormalization n = ImageNormalization::clip();
  const at::Tensor t = image_to_tensor(img, n);
  for (int c = 0; c < 3; ++c)
    for (int x = 0; x < 2; ++x) {
      const float x01 = static_cast<float>(img.at(x, 0, c) * (1.0 / 255.0));
      const float want = (x01 - static_cast<float>(n.mean[c])) / static_cast<float>(n.std[c]);
      EXPECT_EQ(t[c][0][x].item<float>(), want);
    }
  n.do_normalize = false;
  EXPECT_EQ(image_to_tensor(img, n)[2][0][0].item<float>(), 1.0f);  // 255 * (1/255)
  n.do_rescale = false;
  EXPECT_EQ(image_to_tensor(img, n)[1][0][0].item<float>(), 128.0f);
  EXPECT_THROW(images_to_tensor({Image(2, 2), Image(3, 2)}, n), Error);
  EXPECT_THROW(images_to_tensor({}, n), Error);
}
