#include "omni/io/image_tensor.h"

#include <torch/torch.h>

#include <cstring>

#include "omni/core/error.h"

namespace omni::io {

void image_to_chw(const Image& img, const ImageNormalization& norm, float* out) {
  check(img.rgb.size() == static_cast<size_t>(img.width) * img.height * 3, "image_to_tensor",
        "image buffer size does not match " + std::to_string(img.width) + "x" +
            std::to_string(img.height) + "x3");
  for (int c = 0; c < 3; ++c)
    check(!norm.do_normalize || norm.std[c] != 0.0, "image_to_tensor", "std is zero");
  const size_t plane = static_cast<size_t>(img.width) * img.height;
  // Every u8 value maps to one float: tabulate the 256 results per channel.
  for (int c = 0; c < 3; ++c) {
    float table[256];
    const float mean = static_cast<float>(norm.mean[c]);
    const float sd = static_cast<float>(norm.std[c]);
    for (int v = 0; v < 256; ++v) {
      const float x = norm.do_rescale
                             ? static_cast<float>(static_cast<double>(v) * norm.rescale_factor)
                             : static_cast<float>(v);
      float y = x;
      if (norm.do_normalize) {
        y = (y - mean) / sd;  // float32 subtract, then float32 divide
      }
      table[v] = y;
    }
    const uint8_t* in = img.rgb.data() + c;
    float* o = out + plane * c;
    for (size_t i = 0; i < plane; ++i) o[i] = table[in[3 * i]];
  }
}

at::Tensor image_to_tensor(const Image& img, const ImageNormalization& norm) {
  at::Tensor t = torch::empty({3, img.height, img.width}, torch::kFloat32);
  image_to_chw(img, norm, t.data_ptr<float>());
  return t;
}

at::Tensor images_to_tensor(const std::vector<Image>& imgs, const ImageNormalization& norm) {
  check(!imgs.empty(), "images_to_tensor", "no images");
  const int w = imgs[0].width, h = imgs[0].height;
  at::Tensor t = torch::empty({static_cast<int64_t>(imgs.size()), 3, h, w}, torch::kFloat32);
  float* p = t.data_ptr<float>();
  for (size_t i = 0; i < imgs.size(); ++i) {
    check(imgs[i].width == w && imgs[i].height == h, "images_to_tensor",
          "image " + std::to_string(i) + " is " + std::to_string(imgs[i].width) + "x" +
              std::to_string(imgs[i].height) + ", image 0 is " + std::to_string(w) + "x" +
              std::to_string(h));
    image_to_chw(imgs[i], norm, p + i * 3 * static_cast<size_t>(w) * h);
  }
  return t;
}

}  // namespace omni::io
