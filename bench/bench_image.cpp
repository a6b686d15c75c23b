// Image preprocessing speed: PIL-identical resize of a 1024x768 RGB image (all filters) and
// the Janus preprocessing chain (resize long side to 384, pad to square, normalise).
#include <chrono>
#include <cstdio>
#include <random>

#include "omni/io/image.h"
#include "omni/io/image_tensor.h"
#include "omni/io/resize.h"

using namespace omni::io;

int main() {
  Image img;
  img.width = 1024;
  img.height = 768;
  img.rgb.resize(size_t(img.width) * img.height * 3);
  std::mt19937 rng(1);
  for (auto& v : img.rgb) v = static_cast<uint8_t>(rng());
  const struct { const char* name; Resample r; } filters[] = {
      {"nearest", Resample::Nearest}, {"bilinear", Resample::Bilinear}, {"bicubic", Resample::Bicubic},
      {"lanczos", Resample::Lanczos}};
  std::printf("| operation (1024x768 RGB)              | ms/image |\n|---|---:|\n");
  for (const auto& f : filters) {
    Image out = resize(img, 384, 288, f.r);
    const int reps = 20;
    auto t0 = std::chrono::steady_clock::now();
    for (int i = 0; i < reps; ++i) out = resize(img, 384, 288, f.r);
    double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count() / reps;
    std::printf("| resize to 384x288, %-8s            | %8.2f |\n", f.name, ms);
  }
  const int reps = 20;
  auto t0 = std::chrono::steady_clock::now();
  for (int i = 0; i < reps; ++i) {
    Image sq = expand_to_square(resize(img, 384, 288, Resample::Bicubic), 127, 127, 127);
    auto t = image_to_tensor(sq, ImageNormalization::janus());
    (void)t;
  }
  double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count() / reps;
  std::printf("| Janus preprocess (resize+pad+normalise) | %8.2f |\n", ms);
  return 0;
}
