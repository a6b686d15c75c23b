// BAGEL's `pil_img2rgb` (RGBA / transparency composited onto white), torch-free:
// io::composite_rgba against the official output in tests/fixtures/bagel_tiny/transforms.safetensors
// (README "transforms.safetensors", case rgba_composited_official_vit), and
// io::read_image_composited on small PNGs built here, with expected pixels worked out by
// hand from Pillow 9.4's rules (mode on open, convert_transparent, paste's BLEND).
// The size rule / resize / tensor are in test_bagel_transforms_torch.cpp (they live in the
// libtorch-side library, as everything under src/omni/models does).
#include <gtest/gtest.h>

#include <cstdint>
#include <cstdio>
#include <string>
#include <vector>

#include "omni/core/error.h"
#include "omni/io/image.h"
#include "omni/io/safetensors.h"
#include "test_paths.h"

using namespace omni;

namespace {

std::string transforms_path() {
  return std::string(OMNI_FIXTURES) + "/bagel_tiny/transforms.safetensors";
}

// ---- a tiny PNG writer (stored deflate blocks), enough for every colour type / depth ----

uint32_t crc32(const uint8_t* p, size_t n, uint32_t c = 0xffffffffu) {
  for (size_t i = 0; i < n; ++i) {
    c ^= p[i];
    for (int k = 0; k < 8; ++k) c = (c >> 1) ^ (0xedb88320u & (0u - (c & 1u)));
  }
  return c;
}

void put32(std::vector<uint8_t>& v, uint32_t x) {
  for (int s = 24; s >= 0; s -= 8) v.push_back(static_cast<uint8_t>(x >> s));
}

void chunk(std::vector<uint8_t>& png, const char* type, const std::vector<uint8_t>& data) {
  put32(png, static_cast<uint32_t>(data.size()));
  std::vector<uint8_t> body(type, type + 4);
  body.insert(body.end(), data.begin(), data.end());
  png.insert(png.end(), body.begin(), body.end());
  put32(png, crc32(body.data(), body.size()) ^ 0xffffffffu);
}

// `rows`: the raw (already packed) scanlines without filter bytes.
std::vector<uint8_t> make_png(int w, int h, int depth, int color_type,
                              const std::vector<std::vector<uint8_t>>& rows,
                              const std::vector<uint8_t>& plte = {},
                              const std::vector<uint8_t>& trns = {}) {
  std::vector<uint8_t> png = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
  std::vector<uint8_t> ihdr;
  put32(ihdr, static_cast<uint32_t>(w));
  put32(ihdr, static_cast<uint32_t>(h));
  ihdr.insert(ihdr.end(), {static_cast<uint8_t>(depth), static_cast<uint8_t>(color_type), 0, 0, 0});
  chunk(png, "IHDR", ihdr);
  if (!plte.empty()) chunk(png, "PLTE", plte);
  if (!trns.empty()) chunk(png, "tRNS", trns);
  std::vector<uint8_t> raw;
  for (const auto& r : rows) {
    raw.push_back(0);  // filter: none
    raw.insert(raw.end(), r.begin(), r.end());
  }
  std::vector<uint8_t> z = {0x78, 0x01};
  size_t pos = 0;
  do {  // stored blocks of at most 65535 bytes
    const size_t n = std::min<size_t>(65535, raw.size() - pos);
    const bool last = pos + n == raw.size();
    z.push_back(last ? 1 : 0);
    z.push_back(static_cast<uint8_t>(n));
    z.push_back(static_cast<uint8_t>(n >> 8));
    z.push_back(static_cast<uint8_t>(~n));
    z.push_back(static_cast<uint8_t>(~n >> 8));
    z.insert(z.end(), raw.begin() + pos, raw.begin() + pos + n);
    pos += n;
  } while (pos < raw.size());
  uint32_t a = 1, b = 0;
  for (uint8_t c : raw) {
    a = (a + c) % 65521;
    b = (b + a) % 65521;
  }
  put32(z, (b << 16) | a);
  chunk(png, "IDAT", z);
  chunk(png, "IEND", {});
  return png;
}

io::Image decode_c(const std::vector<uint8_t>& png) {
  return io::decode_image_composited(png.data(), png.size(), "test.png");
}
io::Image decode_plain(const std::vector<uint8_t>& png) {
  return io::decode_image(png.data(), png.size(), "test.png");
}
std::vector<uint8_t> px(const io::Image& im) { return im.rgb; }

// Pillow's BLEND(a, 255, c) for the white canvas, written independently: round(x / 255)
// with halves up (x never sits on a half, 255 being odd), in exact integer arithmetic.
uint8_t over_white(int c, int a) {
  const int x = 255 * (255 - a) + c * a;
  return static_cast<uint8_t>((2 * x + 255) / 510);
}

}  // namespace

// The official pil_img2rgb output of the fixture's RGBA image.
TEST(BagelTransforms, CompositeRgbaMatchesOfficial) {
  auto f = io::SafetensorsFile::open(transforms_path());
  const auto& in = f->info("rgba_input_u8");
  const auto& ref = f->info("rgba_composited_official_vit.input_u8");
  ASSERT_EQ(in.dtype, DType::U8);
  ASSERT_EQ(in.shape, (std::vector<int64_t>{16, 20, 4}));
  ASSERT_EQ(ref.shape, (std::vector<int64_t>{16, 20, 3}));
  const int h = 16, w = 20;
  const uint8_t* rgba = f->data("rgba_input_u8");
  const uint8_t* want = f->data("rgba_composited_official_vit.input_u8");

  // The fixture must exercise real blending: some alpha strictly between 0 and 255.
  int partial = 0, transparent = 0;
  for (int i = 0; i < w * h; ++i) {
    partial += rgba[4 * i + 3] > 0 && rgba[4 * i + 3] < 255;
    transparent += rgba[4 * i + 3] == 0;
  }
  std::printf("rgba fixture: %d partially transparent, %d transparent of %d pixels\n", partial,
              transparent, w * h);
  EXPECT_GT(partial, 0);

  io::Image got = io::composite_rgba(rgba, w, h);
  ASSERT_EQ(got.width, w);
  ASSERT_EQ(got.height, h);
  int worst = 0, mismatches = 0;
  for (int i = 0; i < w * h * 3; ++i) {
    const int d = std::abs(int(got.rgb[i]) - int(want[i]));
    worst = std::max(worst, d);
    mismatches += d != 0;
  }
  std::printf("composite vs official pil_img2rgb: max |diff| = %d, %d of %d values differ\n",
              worst, mismatches, w * h * 3);
  EXPECT_EQ(worst, 0);
  // Dropping the alpha (what read_image does) is NOT what the official code does here.
  int dropped_diff = 0;
  for (int i = 0; i < w * h; ++i)
    for (int c = 0; c < 3; ++c) dropped_diff += rgba[4 * i + c] != want[3 * i + c];
  EXPECT_GT(dropped_diff, 0);
}

// Pillow's DIV255 rounding equals exact rounding over the whole domain, any background.
TEST(BagelTransforms, CompositeBlendRoundingExhaustive) {
  std::vector<uint8_t> rgba;
  for (int a = 0; a < 256; ++a)
    for (int c = 0; c < 256; ++c) rgba.insert(rgba.end(), {uint8_t(c), uint8_t(c), uint8_t(c), uint8_t(a)});
  io::Image white = io::composite_rgba(rgba.data(), 256, 256);
  io::Image grey = io::composite_rgba(rgba.data(), 256, 256, 0, 7, 200);
  int bad = 0;
  for (int a = 0; a < 256; ++a)
    for (int c = 0; c < 256; ++c) {
      const size_t i = (static_cast<size_t>(a) * 256 + c) * 3;
      bad += white.rgb[i] != over_white(c, a);
      const int bgs[3] = {0, 7, 200};
      for (int k = 0; k < 3; ++k) {
        const int x = bgs[k] * (255 - a) + c * a;
        bad += grey.rgb[i + k] != (2 * x + 255) / 510;
      }
    }
  EXPECT_EQ(bad, 0);
  EXPECT_EQ(white.rgb[0], 255);                          // a = 0: background
  EXPECT_EQ(white.rgb[(255 * 256 + 17) * 3], 17);        // a = 255: the pixel
  EXPECT_EQ(white.rgb[(128 * 256 + 0) * 3], 127);        // 255·127/255
}

TEST(BagelTransforms, ReadCompositedRgba8And16) {
  // 3×1 RGBA: opaque red, half-transparent blue (a=128), fully transparent black.
  auto p8 = make_png(3, 1, 8, 6, {{255, 0, 0, 255, 0, 0, 255, 128, 0, 0, 0, 0}});
  EXPECT_EQ(px(decode_c(p8)),
            (std::vector<uint8_t>{255, 0, 0, over_white(0, 128), over_white(0, 128), 255, 255, 255, 255}));
  EXPECT_EQ(px(decode_c(p8))[3], 127);
  EXPECT_EQ(px(decode_plain(p8)), (std::vector<uint8_t>{255, 0, 0, 0, 0, 255, 0, 0, 0}));  // unchanged
  // 16-bit: high bytes of colour and alpha (a = 0x40).
  auto p16 = make_png(1, 1, 16, 6, {{0x10, 0xff, 0x80, 0x00, 0x00, 0x01, 0x40, 0xff}});
  EXPECT_EQ(px(decode_c(p16)),
            (std::vector<uint8_t>{over_white(0x10, 0x40), over_white(0x80, 0x40), over_white(0, 0x40)}));
}

TEST(BagelTransforms, ReadCompositedGreyAlpha) {
  // 8-bit LA opens as Pillow mode "LA": pil_img2rgb only converts to RGB, the alpha is dropped.
  auto la8 = make_png(2, 1, 8, 4, {{100, 0, 50, 128}});
  EXPECT_EQ(px(decode_c(la8)), (std::vector<uint8_t>{100, 100, 100, 50, 50, 50}));
  // 16-bit LA opens as "RGBA" (rawmode LA;16B): composited with the alpha's high byte.
  auto la16 = make_png(2, 1, 16, 4, {{100, 9, 0, 99, 50, 1, 128, 0}});
  const uint8_t v = over_white(50, 128);
  EXPECT_EQ(px(decode_c(la16)), (std::vector<uint8_t>{255, 255, 255, v, v, v}));
}

TEST(BagelTransforms, ReadCompositedPaletteTrns) {
  // 4 palette entries, tRNS for the first 3 (the 4th is opaque); pixels use 0,1,2,3.
  std::vector<uint8_t> plte = {10, 20, 30, 40, 50, 60, 70, 80, 90, 200, 210, 220};
  auto p = make_png(4, 1, 8, 3, {{0, 1, 2, 3}}, plte, {0, 255, 100});
  EXPECT_EQ(px(decode_c(p)),
            (std::vector<uint8_t>{255, 255, 255, 40, 50, 60, over_white(70, 100), over_white(80, 100),
                                  over_white(90, 100), 200, 210, 220}));
  EXPECT_EQ(px(decode_plain(p)),
            (std::vector<uint8_t>{10, 20, 30, 40, 50, 60, 70, 80, 90, 200, 210, 220}));
  // A palette image without tRNS is left alone.
  auto q = make_png(2, 1, 8, 3, {{0, 1}}, plte);
  EXPECT_EQ(px(decode_c(q)), (std::vector<uint8_t>{10, 20, 30, 40, 50, 60}));
}

TEST(BagelTransforms, ReadCompositedColourKey) {
  // RGB + tRNS key (40,50,60): exactly matching pixels become white.
  auto rgb = make_png(3, 1, 8, 2, {{40, 50, 60, 40, 50, 61, 1, 2, 3}}, {}, {0, 40, 0, 50, 0, 60});
  EXPECT_EQ(px(decode_c(rgb)), (std::vector<uint8_t>{255, 255, 255, 40, 50, 61, 1, 2, 3}));
  // Grey 8-bit + key 7.
  auto g8 = make_png(3, 1, 8, 0, {{7, 8, 0}}, {}, {0, 7});
  EXPECT_EQ(px(decode_c(g8)), (std::vector<uint8_t>{255, 255, 255, 8, 8, 8, 0, 0, 0}));
  // 16-bit RGB: Pillow keeps the pixel's high byte but compares it with the key's LOW byte.
  auto rgb16 = make_png(2, 1, 16, 2, {{0x12, 0x34, 0x56, 0x78, 0x9a, 0xbc, 0x34, 0x00, 0x78, 0x00, 0xbc, 0x00}},
                        {}, {0x12, 0x34, 0x56, 0x78, 0x9a, 0xbc});
  EXPECT_EQ(px(decode_c(rgb16)), (std::vector<uint8_t>{0x12, 0x56, 0x9a, 255, 255, 255}));
  // 16-bit grey (mode "I"): clamped to 255, compared with the key's low byte (0x01ff -> 255).
  auto g16 = make_png(3, 1, 16, 0, {{0x01, 0xff, 0x00, 0x10, 0x00, 0xff}}, {}, {0x01, 0xff});
  EXPECT_EQ(px(decode_c(g16)), (std::vector<uint8_t>{255, 255, 255, 16, 16, 16, 255, 255, 255}));
  // 2-bit grey: Pillow scales pixels to 0/85/170/255 but not the key, so key 1 matches nothing
  // and key 0 matches black.
  auto g2k1 = make_png(4, 1, 2, 0, {{0b00011011}}, {}, {0, 1});
  EXPECT_EQ(px(decode_c(g2k1)), px(decode_plain(g2k1)));
  EXPECT_EQ(px(decode_c(g2k1)), (std::vector<uint8_t>{0, 0, 0, 85, 85, 85, 170, 170, 170, 255, 255, 255}));
  auto g2k0 = make_png(2, 1, 2, 0, {{0b00010000}}, {}, {0, 0});
  EXPECT_EQ(px(decode_c(g2k0)), (std::vector<uint8_t>{255, 255, 255, 85, 85, 85}));
  // No tRNS: untouched.
  auto plain = make_png(1, 1, 8, 2, {{40, 50, 60}});
  EXPECT_EQ(px(decode_c(plain)), (std::vector<uint8_t>{40, 50, 60}));
}

TEST(BagelTransforms, ReadCompositedJpegAndErrorsLikeReadImage) {
  const std::string fx = std::string(OMNI_FIXTURES) + "/images/";
  // JPEG never carries transparency: identical to read_image.
  EXPECT_EQ(io::read_image_composited(fx + "dec_jpeg_420.jpg").rgb,
            io::read_image(fx + "dec_jpeg_420.jpg").rgb);
  // Opaque RGB PNG: identical too.
  EXPECT_EQ(io::read_image_composited(fx + "dec_rgb8.png").rgb, io::read_image(fx + "dec_rgb8.png").rgb);
  // The fixture RGBA PNG has transparent pixels: they turn white; opaque ones are kept.
  io::Image c = io::read_image_composited(fx + "dec_rgba8.png");
  io::Image d = io::read_image(fx + "dec_rgba8.png");
  ASSERT_EQ(c.width, d.width);
  EXPECT_NE(c.rgb, d.rgb);
  EXPECT_THROW(io::read_image_composited(fx + "bad_truncated.png"), Error);
  EXPECT_THROW(io::read_image_composited(fx + "does_not_exist.png"), Error);
}
