// BAGEL's image preprocessing, `data/transforms.py` ImageTransform of the official code
// (ByteDance-Seed/Bagel): MaxLongEdgeMinShortEdgeResize, then ToTensor + Normalize(0.5, 0.5).
//
// The size rule (all arithmetic in double, as Python floats are; `round` = Python's round,
// halves to even; snap(v) = max(stride, round(v / stride) · stride)):
//   1. s = min(max / max(W, H), 1.0); s = max(s, min / min(W, H))
//      W, H = snap(round(W·s)), snap(round(H·s))
//   2. if W·H > max_pixels / img_num:  s = max_pixels / img_num / (W·H)   (not square-rooted:
//      the official code's literal behaviour) and W, H = snap(round(W·s)), snap(round(H·s))
//   3. if max(W, H) > max:  s = max / max(W, H) and the same rescale + snap again
// then torchvision F.resize(img, (H, W), BICUBIC, antialias=True) on a PIL image, which is PIL's
// `img.resize((W, H), Image.BICUBIC)` (io::resize, bit-exact), so antialias changes nothing.
//
// This header is torch-free; image_transform()/image_transform_tensor() are defined in
// image_transform_torch.cpp.
#pragma once
#include <cstdint>
#include <utility>

#include "omni/io/image.h"

namespace at {
class Tensor;
}

namespace omni::bagel {

struct ImageTransformParams {
  int max_image_size = 0;
  int min_image_size = 0;
  int image_stride = 0;
  int64_t max_pixels = 14 * 14 * 9 * 1024;  // 1,806,336: the official default

  // The inference transforms of the official inferencer / app / notebook.
  static ImageTransformParams vae() { return {1024, 512, 16}; }
  static ImageTransformParams vit() { return {980, 224, 14}; }
};

// (width, height) that MaxLongEdgeMinShortEdgeResize gives a width×height image.
// Throws omni::Error for a non-positive size, stride, max_image_size or img_num.
std::pair<int, int> transform_size(int width, int height, const ImageTransformParams& p,
                                   int img_num = 1);

// The official `resize_transform(img, img_num)`: PIL bicubic to transform_size().
// Returns a copy when the size does not change (as PIL's resize does).
io::Image resize_for_transform(const io::Image& img, const ImageTransformParams& p,
                               int img_num = 1);

// torchvision ToTensor + Normalize(mean 0.5, std 0.5) of an already resized image:
// float32 [3, H, W] with x = (float32(u8) / 255 - 0.5) / 0.5, every step in float32.
at::Tensor image_transform_tensor(const io::Image& resized);

// The whole official `ImageTransform.__call__(img, img_num)`: resize, then the tensor above.
at::Tensor image_transform(const io::Image& img, const ImageTransformParams& p, int img_num = 1);

}  // namespace omni::bagel
