#include "omni/models/bagel/image_transform.h"

#include <algorithm>
#include <cmath>
#include <string>

#include "omni/core/error.h"
#include "omni/io/resize.h"

namespace omni::bagel {

namespace {

// Python's round(x) for a float: nearest integer, halves to even (exact on the double value;
// x - floor(x) is exact for every double of this size).
int64_t py_round(double x) {
  const double f = std::floor(x);
  const double d = x - f;
  double r = f;
  if (d > 0.5) {
    r = f + 1.0;
  } else if (d == 0.5) {
    r = std::fmod(f, 2.0) == 0.0 ? f : f + 1.0;
  }
  return static_cast<int64_t>(r);
}

// _make_divisible: max(stride, int(round(value / stride) * stride)); value / stride is Python's
// true division (int / int -> correctly rounded double).
int64_t make_divisible(int64_t value, int stride) {
  const int64_t v = py_round(static_cast<double>(value) / static_cast<double>(stride)) * stride;
  return std::max<int64_t>(stride, v);
}

// _apply_scale: each side rounded (int * float, in double), then snapped to the stride.
std::pair<int64_t, int64_t> apply_scale(int64_t w, int64_t h, double scale, int stride) {
  const int64_t nw = py_round(static_cast<double>(w) * scale);
  const int64_t nh = py_round(static_cast<double>(h) * scale);
  return {make_divisible(nw, stride), make_divisible(nh, stride)};
}

}  // namespace

std::pair<int, int> transform_size(int width, int height, const ImageTransformParams& p,
                                   int img_num) {
  const std::string what = "bagel ImageTransform";
  check(width > 0 && height > 0, what,
        "image size " + std::to_string(width) + "x" + std::to_string(height) + " is empty");
  check(p.image_stride > 0, what, "image_stride must be positive");
  check(p.max_image_size > 0, what, "max_image_size must be positive");
  check(p.max_pixels > 0, what, "max_pixels must be positive");
  check(img_num > 0, what, "img_num must be positive");
  const int stride = p.image_stride;
  const double max_size = p.max_image_size, min_size = p.min_image_size;

  double scale = std::min(max_size / static_cast<double>(std::max(width, height)), 1.0);
  scale = std::max(scale, min_size / static_cast<double>(std::min(width, height)));
  auto [w, h] = apply_scale(width, height, scale, stride);

  // max_pixels / img_num is a Python float; the int product compares exactly against it.
  const double pixel_budget = static_cast<double>(p.max_pixels) / static_cast<double>(img_num);
  if (static_cast<double>(w * h) > pixel_budget) {
    scale = pixel_budget / static_cast<double>(w * h);
    std::tie(w, h) = apply_scale(w, h, scale, stride);
  }

  if (std::max(w, h) > p.max_image_size) {
    scale = max_size / static_cast<double>(std::max(w, h));
    std::tie(w, h) = apply_scale(w, h, scale, stride);
  }
  check(w <= (1 << 20) && h <= (1 << 20), what,
        "resized size " + std::to_string(w) + "x" + std::to_string(h) + " is too large");
  return {static_cast<int>(w), static_cast<int>(h)};
}

io::Image resize_for_transform(const io::Image& img, const ImageTransformParams& p,
                               int img_num) {
  const auto [w, h] = transform_size(img.width, img.height, p, img_num);
  return io::resize(img, w, h, io::Resample::Bicubic);
}

}  // namespace omni::bagel
