// Pillow-exact resampling. The filter weights are computed in double exactly as Pillow 9.4
// does (same formulas and evaluation order), so fused multiply-adds must not be formed: they
// round differently and would move a fixed-point coefficient by one in rare cases (this only
// matters on targets with FMA, e.g. -march=native or aarch64). The pixel passes are integer.
#include "omni/io/resize.h"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdint>
#include <vector>

#include "omni/core/error.h"
#include "omni/core/strings.h"

#if defined(__clang__)
#pragma clang fp contract(off)
#define OMNI_NO_FP_CONTRACT
#elif defined(__GNUC__)
#define OMNI_NO_FP_CONTRACT __attribute__((optimize("fp-contract=off")))
#else
#define OMNI_NO_FP_CONTRACT
#endif
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && defined(__linux__)
// The pixel passes are exact integer arithmetic, so wider vectors only change the speed.
#define OMNI_VECTOR_CLONES __attribute__((target_clones("avx2", "default")))
#else
#define OMNI_VECTOR_CLONES
#endif

namespace omni::io {

namespace {

constexpr double kPi = 3.14159265358979323846;  // M_PI
constexpr int kPrecisionBits = 32 - 8 - 2;       // fixed-point fraction bits of the weights

// ---- filters (the 1-D kernels, support in source pixels at scale 1) ----

OMNI_NO_FP_CONTRACT double filter_box(double x) { return (x > -0.5 && x <= 0.5) ? 1.0 : 0.0; }

OMNI_NO_FP_CONTRACT double filter_bilinear(double x) {
  if (x < 0.0) x = -x;
  if (x < 1.0) return 1.0 - x;
  return 0.0;
}

OMNI_NO_FP_CONTRACT double filter_hamming(double x) {
  if (x < 0.0) x = -x;
  if (x == 0.0) return 1.0;
  if (x >= 1.0) return 0.0;
  x = x * kPi;
  // Pillow writes the window constants as floats (0.54f, 0.46f): keep their float values.
  return std::sin(x) / x * (static_cast<double>(0.54f) + static_cast<double>(0.46f) * std::cos(x));
}

OMNI_NO_FP_CONTRACT double filter_bicubic(double x) {
  // Keys cubic convolution with a = -0.5.
  constexpr double a = -0.5;
  if (x < 0.0) x = -x;
  if (x < 1.0) return ((a + 2.0) * x - (a + 3.0)) * x * x + 1;
  if (x < 2.0) return (((x - 5) * x + 8) * x - 4) * a;
  return 0.0;
}

OMNI_NO_FP_CONTRACT double sinc(double x) {
  if (x == 0.0) return 1.0;
  x = x * kPi;
  return std::sin(x) / x;
}

OMNI_NO_FP_CONTRACT double filter_lanczos(double x) {
  // sinc windowed by sinc, a = 3.
  if (-3.0 <= x && x < 3.0) return sinc(x) * sinc(x / 3);
  return 0.0;
}

struct Filter {
  double (*fn)(double);
  double support;
};

Filter filter_for(Resample r) {
  switch (r) {
    case Resample::Box: return {filter_box, 0.5};
    case Resample::Bilinear: return {filter_bilinear, 1.0};
    case Resample::Hamming: return {filter_hamming, 1.0};
    case Resample::Bicubic: return {filter_bicubic, 2.0};
    case Resample::Lanczos: return {filter_lanczos, 3.0};
    case Resample::Nearest: break;
  }
  throw Error("resize", "internal: nearest has no convolution filter");
}

// Per output pixel: the first source index, the number of taps, and ksize fixed-point weights.
struct Coeffs {
  int ksize = 0;
  std::vector<int> first;
  std::vector<int> count;
  std::vector<int32_t> weight;  // out_size * ksize
};

// in0/in1 are the source interval (Pillow passes the box as single-precision floats).
OMNI_NO_FP_CONTRACT Coeffs precompute(int in_size, float in0, float in1, int out_size,
                                       const Filter& f) {
  double scale = static_cast<double>(in1 - in0) / out_size;
  double filterscale = scale < 1.0 ? 1.0 : scale;
  const double support = f.support * filterscale;
  Coeffs c;
  c.ksize = static_cast<int>(std::ceil(support)) * 2 + 1;
  c.first.resize(out_size);
  c.count.resize(out_size);
  c.weight.assign(static_cast<size_t>(out_size) * c.ksize, 0);
  std::vector<double> k(c.ksize);
  const double ss = 1.0 / filterscale;
  for (int xx = 0; xx < out_size; ++xx) {
    const double center = in0 + (xx + 0.5) * scale;
    int xmin = static_cast<int>(center - support + 0.5);  // truncation, as in C
    if (xmin < 0) xmin = 0;
    int xmax = static_cast<int>(center + support + 0.5);
    if (xmax > in_size) xmax = in_size;
    xmax -= xmin;
    if (xmax > c.ksize) xmax = c.ksize;  // cannot happen; keeps the writes in bounds
    double ww = 0.0;
    for (int x = 0; x < xmax; ++x) {
      const double w = f.fn((x + xmin - center + 0.5) * ss);
      k[x] = w;
      ww += w;
    }
    int32_t* out = &c.weight[static_cast<size_t>(xx) * c.ksize];
    for (int x = 0; x < xmax; ++x) {
      double v = k[x];
      if (ww != 0.0) v /= ww;
      // Round half away from zero to 22-bit fixed point.
      out[x] = v < 0 ? static_cast<int32_t>(-0.5 + v * (1 << kPrecisionBits))
                     : static_cast<int32_t>(0.5 + v * (1 << kPrecisionBits));
    }
    c.first[xx] = xmin;
    c.count[xx] = xmax;
  }
  return c;
}

inline uint8_t clip8(int32_t ss) {
  const int32_t v = ss >> kPrecisionBits;  // arithmetic shift (floor), as Pillow
  return v < 0 ? 0 : v > 255 ? 255 : static_cast<uint8_t>(v);
}

constexpr int32_t kHalf = 1 << (kPrecisionBits - 1);

// Rows [y0, y0 + dst.height) of src, resampled horizontally into dst (dst.width columns).
// Blocks of rows are transposed first so that the taps run over contiguous memory (the same
// vectorisable loop as the vertical pass); integer sums do not depend on the order.
OMNI_VECTOR_CLONES void pass_horizontal(const Image& src, int y0, const Coeffs& c, Image& dst) {
  constexpr int kBlock = 32;
  const int in_w = src.width;
  std::vector<uint8_t> t(static_cast<size_t>(in_w) * kBlock * 3);
  std::vector<int32_t> acc(kBlock * 3);
  for (int yb = 0; yb < dst.height; yb += kBlock) {
    const int nb = std::min(kBlock, dst.height - yb);
    const size_t ts = static_cast<size_t>(nb) * 3;  // one transposed column: nb pixels
    for (int y = 0; y < nb; ++y) {
      const uint8_t* in = src.row(y0 + yb + y);
      uint8_t* o = t.data() + static_cast<size_t>(y) * 3;
      for (int x = 0; x < in_w; ++x, in += 3, o += ts) {
        o[0] = in[0];
        o[1] = in[1];
        o[2] = in[2];
      }
    }
    for (int xx = 0; xx < dst.width; ++xx) {
      std::fill(acc.begin(), acc.begin() + ts, kHalf);
      const int32_t* k = &c.weight[static_cast<size_t>(xx) * c.ksize];
      const uint8_t* col = t.data() + static_cast<size_t>(c.first[xx]) * ts;
      for (int x = 0, n = c.count[xx]; x < n; ++x, col += ts) {
        const int32_t w = k[x];
        int32_t* a = acc.data();
        for (size_t i = 0; i < ts; ++i) a[i] += col[i] * w;
      }
      for (int y = 0; y < nb; ++y) {
        uint8_t* out = dst.row(yb + y) + static_cast<size_t>(xx) * 3;
        out[0] = clip8(acc[y * 3 + 0]);
        out[1] = clip8(acc[y * 3 + 1]);
        out[2] = clip8(acc[y * 3 + 2]);
      }
    }
  }
}

// src rows are indexed from y_offset (bounds in c are absolute source rows).
OMNI_VECTOR_CLONES void pass_vertical(const Image& src, int y_offset, const Coeffs& c, Image& dst) {
  const size_t n = static_cast<size_t>(dst.width) * 3;
  std::vector<int32_t> acc(n);
  for (int yy = 0; yy < dst.height; ++yy) {
    std::fill(acc.begin(), acc.end(), kHalf);
    const int32_t* k = &c.weight[static_cast<size_t>(yy) * c.ksize];
    for (int y = 0, m = c.count[yy]; y < m; ++y) {
      const uint8_t* in = src.row(c.first[yy] + y - y_offset);
      const int32_t w = k[y];
      for (size_t i = 0; i < n; ++i) acc[i] += in[i] * w;  // integer: order does not matter
    }
    uint8_t* out = dst.row(yy);
    for (size_t i = 0; i < n; ++i) out[i] = clip8(acc[i]);
  }
}

// Pillow's nearest path: an affine scale sampling the pixel under each output centre, with the
// source coordinate advanced by repeated addition in double (as Pillow does).
OMNI_NO_FP_CONTRACT Image resize_nearest(const Image& src, int width, int height) {
  const double ax = static_cast<double>(static_cast<float>(src.width) - 0.0f) / width;
  const double ay = static_cast<double>(static_cast<float>(src.height) - 0.0f) / height;
  auto coord = [](double v) { return v < 0.0 ? -1 : static_cast<int>(v); };
  std::vector<int> xs(width, -1);
  double xo = 0.0 + ax * 0.5;
  for (int x = 0; x < width; ++x) {
    const int xi = coord(xo);
    xs[x] = (xi >= 0 && xi < src.width) ? xi : -1;
    xo += ax;
  }
  Image dst(width, height);  // zero-filled, like Pillow's fill for unmapped pixels
  double yo = 0.0 + ay * 0.5;
  for (int y = 0; y < height; ++y) {
    const int yi = coord(yo);
    yo += ay;
    if (yi < 0 || yi >= src.height) continue;
    const uint8_t* in = src.row(yi);
    uint8_t* out = dst.row(y);
    for (int x = 0; x < width; ++x) {
      if (xs[x] < 0) continue;
      const uint8_t* p = in + static_cast<size_t>(xs[x]) * 3;
      out[x * 3 + 0] = p[0];
      out[x * 3 + 1] = p[1];
      out[x * 3 + 2] = p[2];
    }
  }
  return dst;
}

void check_image(const Image& img, const char* what) {
  check(img.width >= 0 && img.height >= 0 &&
            img.rgb.size() == static_cast<size_t>(img.width) * img.height * 3,
        what, "image buffer size does not match " + std::to_string(img.width) + "x" +
                  std::to_string(img.height) + "x3");
}

}  // namespace

Resample resample_from_pil(int code, const std::string& context) {
  if (code < 0 || code > 5)
    throw Error(context, "unknown Pillow resample code " + std::to_string(code) +
                             " (expected 0 nearest, 1 lanczos, 2 bilinear, 3 bicubic, 4 box, "
                             "5 hamming)");
  return static_cast<Resample>(code);
}

Resample parse_resample(const std::string& name, const std::string& context) {
  const std::string s = ascii_lower(name);
  for (int i = 0; i <= 5; ++i) {
    const Resample r = static_cast<Resample>(i);
    if (s == resample_name(r)) return r;
  }
  if (s == "antialias") return Resample::Lanczos;  // Pillow's old alias
  throw Error(context, "unknown resample filter '" + name +
                           "' (expected nearest, bilinear, bicubic, lanczos, box or hamming)");
}

const char* resample_name(Resample r) {
  switch (r) {
    case Resample::Nearest: return "nearest";
    case Resample::Lanczos: return "lanczos";
    case Resample::Bilinear: return "bilinear";
    case Resample::Bicubic: return "bicubic";
    case Resample::Box: return "box";
    case Resample::Hamming: return "hamming";
  }
  return "?";
}

Image resize(const Image& src, int width, int height, Resample r) {
  check_image(src, "resize");
  if (width < 1 || height < 1)
    throw Error("resize", "target size " + std::to_string(width) + "x" + std::to_string(height) +
                              " must be at least 1x1");
  if (src.empty()) throw Error("resize", "source image is empty");
  if (src.width == width && src.height == height) return src;
  if (r == Resample::Nearest) return resize_nearest(src, width, height);

  const Filter f = filter_for(r);
  const bool need_h = width != src.width;
  const bool need_v = height != src.height;
  const Coeffs ch = precompute(src.width, 0.0f, static_cast<float>(src.width), width, f);
  const Coeffs cv = precompute(src.height, 0.0f, static_cast<float>(src.height), height, f);

  if (need_h && !need_v) {
    Image out(width, src.height);
    pass_horizontal(src, 0, ch, out);
    return out;
  }
  if (!need_h) {
    Image out(width, height);
    pass_vertical(src, 0, cv, out);
    return out;
  }
  // Only the source rows the vertical pass reads go through the horizontal pass.
  const int y_first = cv.first[0];
  const int y_last = cv.first[height - 1] + cv.count[height - 1];
  Image tmp(width, y_last - y_first);
  pass_horizontal(src, y_first, ch, tmp);
  Image out(width, height);
  pass_vertical(tmp, y_first, cv, out);
  return out;
}

Image pad_to(const Image& src, int width, int height, int x, int y, uint8_t r, uint8_t g,
             uint8_t b) {
  check_image(src, "pad");
  check(width >= 0 && height >= 0, "pad", "negative canvas size");
  Image out(width, height);
  for (size_t i = 0; i < out.rgb.size(); i += 3) {
    out.rgb[i] = r;
    out.rgb[i + 1] = g;
    out.rgb[i + 2] = b;
  }
  const int x0 = std::max(0, x), x1 = std::min(width, x + src.width);
  const int y0 = std::max(0, y), y1 = std::min(height, y + src.height);
  if (x0 >= x1) return out;
  for (int yy = y0; yy < y1; ++yy) {
    const uint8_t* in = src.row(yy - y) + static_cast<size_t>(x0 - x) * 3;
    std::copy(in, in + static_cast<size_t>(x1 - x0) * 3, out.row(yy) + static_cast<size_t>(x0) * 3);
  }
  return out;
}

Image expand_to_square(const Image& src, uint8_t r, uint8_t g, uint8_t b) {
  check_image(src, "expand_to_square");
  if (src.width == src.height) return src;
  const int size = std::max(src.width, src.height);
  return pad_to(src, size, size, (size - src.width) / 2, (size - src.height) / 2, r, g, b);
}

Image crop(const Image& src, int x, int y, int width, int height) {
  check_image(src, "crop");
  check(x >= 0 && y >= 0 && width >= 0 && height >= 0 && x + width <= src.width &&
            y + height <= src.height,
        "crop", "rectangle " + std::to_string(width) + "x" + std::to_string(height) + "+" +
                    std::to_string(x) + "+" + std::to_string(y) + " is outside the " +
                    std::to_string(src.width) + "x" + std::to_string(src.height) + " image");
  Image out(width, height);
  for (int yy = 0; yy < height; ++yy) {
    const uint8_t* in = src.row(y + yy) + static_cast<size_t>(x) * 3;
    std::copy(in, in + static_cast<size_t>(width) * 3, out.row(yy));
  }
  return out;
}

Image center_crop(const Image& src, int width, int height) {
  check_image(src, "center_crop");
  if (width < 1 || height < 1)
    throw Error("center_crop", "crop size " + std::to_string(width) + "x" +
                                   std::to_string(height) + " must be at least 1x1");
  const Image* img = &src;
  Image padded;
  if (width > src.width || height > src.height) {
    const int left = width > src.width ? (width - src.width) / 2 : 0;
    const int top = height > src.height ? (height - src.height) / 2 : 0;
    const int right = width > src.width ? (width - src.width + 1) / 2 : 0;
    const int bottom = height > src.height ? (height - src.height + 1) / 2 : 0;
    padded = pad_to(src, src.width + left + right, src.height + top + bottom, left, top, 0, 0, 0);
    if (padded.width == width && padded.height == height) return padded;
    img = &padded;
  }
  // Python's round() of a non-negative half-integer d/2: halves go to the even neighbour.
  auto round_half = [](int d) {
    int q = d / 2;
    if ((d & 1) && (q & 1)) ++q;
    return q;
  };
  const int top = round_half(img->height - height);
  const int left = round_half(img->width - width);
  return crop(*img, left, top, width, height);
}

}  // namespace omni::io
