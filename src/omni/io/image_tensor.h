// Image → model input tensor, as Hugging Face image processors do it (libtorch side; the
// definitions live in image_tensor_torch.cpp, part of the `omni` library).
//
// Per element, exactly as numpy does in transformers' BaseImageProcessor:
//   rescale:   x = float32(double(u8) * rescale_factor)      (computed in float64, then cast)
//   normalize: x = (x - float32(mean[c])) / float32(std[c])  (in float32)
// e.g. Janus: float32(float32(u8 * (1/255)) - 0.5) / 0.5, bit-exact with its pixel_values.
#pragma once
#include <array>
#include <vector>

#include "omni/io/image.h"

namespace at {
class Tensor;
}

namespace omni::io {

struct ImageNormalization {
  bool do_rescale = true;
  double rescale_factor = 1.0 / 255.0;  // HF stores 0.00392156862745098 (== 1/255 in double)
  bool do_normalize = true;
  std::array<double, 3> mean = {0.5, 0.5, 0.5};  // cast to float32 before use, as numpy does
  std::array<double, 3> std = {0.5, 0.5, 0.5};

  static ImageNormalization janus() { return {}; }
  static ImageNormalization clip() {  // OpenAI CLIP / many ViT processors
    ImageNormalization n;
    n.mean = {0.48145466, 0.4578275, 0.40821073};
    n.std = {0.26862954, 0.26130258, 0.27577711};
    return n;
  }
  static ImageNormalization imagenet() {
    ImageNormalization n;
    n.mean = {0.485, 0.456, 0.406};
    n.std = {0.229, 0.224, 0.225};
    return n;
  }
};

// Writes the normalised image as float32 CHW (3 × height × width values) to `out`.
void image_to_chw(const Image& img, const ImageNormalization& norm, float* out);

// float32 tensor [3, H, W] on the CPU.
at::Tensor image_to_tensor(const Image& img, const ImageNormalization& norm);
// float32 tensor [N, 3, H, W]; all images must have the same size.
at::Tensor images_to_tensor(const std::vector<Image>& imgs, const ImageNormalization& norm);

}  // namespace omni::io
