// The tensor half of BAGEL's ImageTransform (header: image_transform.h).
#include <torch/torch.h>

#include "omni/io/image_tensor.h"
#include "omni/models/bagel/image_transform.h"

namespace omni::bagel {

at::Tensor image_transform_tensor(const io::Image& resized) {
  // torchvision ToTensor is float32(u8) / 255 (a float32 division) and Normalize is
  // (x - 0.5f) / 0.5f in float32. io::image_to_tensor computes float32(double(u8) · (1/255))
  // instead; the two agree for all 256 byte values (checked exhaustively in
  // tests/unit/test_bagel_transforms_torch.cpp), so it is reused.
  io::ImageNormalization n;  // rescale 1/255, mean 0.5, std 0.5
  return io::image_to_tensor(resized, n);
}

at::Tensor image_transform(const io::Image& img, const ImageTransformParams& p, int img_num) {
  return image_transform_tensor(resize_for_transform(img, p, img_num));
}

}  // namespace omni::bagel
