// Image decoding and encoding (PNG, JPEG, WebP), torch-free.
//
// Every decoder returns 8-bit RGB exactly as Pillow 9.4 gives it after
// `Image.open(path).convert("RGB")`, so that preprocessing matches the Python reference
// implementations bit for bit:
//   * grey (1/2/4/8 bit) is replicated; 16-bit grey is clamped to 0..255 (Pillow opens it as
//     mode "I" and its I→RGB conversion clamps, it does not scale);
//   * grey+alpha and RGBA drop the alpha channel (no compositing onto a background; for that
//     see read_image_composited below);
//   * 16-bit RGB(A) and grey+alpha keep the most significant byte;
//   * palette images are looked up in the PLTE palette (tRNS is ignored); indices past the
//     end of PLTE read Pillow's default grey ramp (index i → (i,i,i));
//   * gamma/ICC/sBIT/EXIF orientation are ignored, as Pillow's open/convert ignore them;
//   * JPEG is decoded by libjpeg(-turbo) with Pillow's settings (ISLOW DCT, fancy upsampling);
//     CMYK/YCCK JPEGs are read with Adobe polarity (inverted) and converted with Pillow's
//     CMYK→RGB rule  R = (255-K) - round((255-K)·C/255);
//   * WebP (if built with libwebp) is decoded to RGBA and the alpha is dropped; animated WebP
//     is refused.
// Errors throw omni::Error whose message names the file and says what is wrong.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace omni::io {

// An 8-bit RGB image, row-major HWC (rgb.size() == width * height * 3).
struct Image {
  int width = 0;
  int height = 0;
  std::vector<uint8_t> rgb;

  Image() = default;
  Image(int w, int h) : width(w), height(h), rgb(static_cast<size_t>(w) * h * 3, 0) {}

  bool empty() const { return width == 0 || height == 0; }
  size_t index(int x, int y, int c) const {
    return (static_cast<size_t>(y) * width + x) * 3 + c;
  }
  uint8_t at(int x, int y, int c) const { return rgb[index(x, y, c)]; }
  uint8_t& at(int x, int y, int c) { return rgb[index(x, y, c)]; }
  const uint8_t* row(int y) const { return rgb.data() + static_cast<size_t>(y) * width * 3; }
  uint8_t* row(int y) { return rgb.data() + static_cast<size_t>(y) * width * 3; }
};

// Reads a PNG, JPEG or WebP file (detected from its first bytes, not its extension).
Image read_image(const std::string& path);
// Same for bytes already in memory; `name` is used in error messages.
Image decode_image(const uint8_t* data, size_t size, const std::string& name);

// Like read_image / decode_image, but transparency is composited onto a solid (r,g,b) canvas
// exactly as BAGEL's `data_utils.pil_img2rgb` does with Pillow 9.4:
//   if im.mode == "RGBA" or im.info.get("transparency") is not None:
//       bg = Image.new("RGB", im.size, (r,g,b)); bg.paste(im.convert("RGBA"), mask=alpha)
//   else: im.convert("RGB")
// Per channel: out = DIV255(bg·(255-a) + c·a), DIV255(x) = ((x+128) + ((x+128)>>8)) >> 8
// (Pillow's integer BLEND). Which files are composited follows the mode Pillow 9.4 opens:
//   * PNG RGBA (8/16 bit, high bytes) and 16-bit grey+alpha (Pillow opens it as "RGBA"):
//     composited with their alpha;
//   * PNG 8-bit grey+alpha (Pillow mode "LA"): NOT composited, the alpha is dropped;
//   * PNG palette + tRNS: alpha of index i = tRNS[i] (255 past the end of tRNS);
//   * PNG grey / RGB + tRNS key colour: pixels whose converted 8-bit value equals the key's low
//     byte(s) become (r,g,b) (Pillow's rgbT2rgba masks the 16-bit key with 0xff, so for
//     16-bit and 1/2/4-bit images the match is Pillow's, not the PNG spec's);
//   * WebP with an alpha channel: composited; JPEG: never.
// Known gap: a palette tRNS longer than PLTE is discarded by libpng (Pillow would apply it).
// Everything else (decoding, errors) is exactly read_image's.
Image read_image_composited(const std::string& path, uint8_t r = 255, uint8_t g = 255,
                            uint8_t b = 255);
Image decode_image_composited(const uint8_t* data, size_t size, const std::string& name,
                              uint8_t r = 255, uint8_t g = 255, uint8_t b = 255);
// The compositing step alone: an RGBA buffer (row-major HWC, width*height*4 bytes) pasted
// onto a solid (r,g,b) canvas through its own alpha, with Pillow's BLEND rounding as above.
Image composite_rgba(const uint8_t* rgba, int width, int height, uint8_t r = 255,
                     uint8_t g = 255, uint8_t b = 255);
// Same, with the colour and the alpha plane (width*height bytes) given separately.
Image composite_alpha(const Image& rgb, const uint8_t* alpha, uint8_t r = 255, uint8_t g = 255,
                      uint8_t b = 255);

// 8-bit RGB PNG, no interlacing. `path` / "PNG encoder" appear in error messages.
std::vector<uint8_t> encode_png(const Image& img);
void write_png(const std::string& path, const Image& img);

// Baseline 8-bit RGB JPEG (libjpeg; 4:4:4, no chroma subsampling; `quality` 1..100). Errors
// name "JPEG encoder" (write_image adds the path).
std::vector<uint8_t> encode_jpeg(const Image& img, int quality = 95);

// The file format an output path asks for by its extension, case-insensitive: .jpg / .jpeg →
// JPEG, .png or none → PNG. Any other extension throws Error(what, ...) naming the ones written.
enum class ImageFormat { png, jpeg };
ImageFormat output_image_format(const std::string& path, const std::string& what);
// write_png, or the JPEG of output_image_format(path) at quality 95 (written atomically).
void write_image(const std::string& path, const Image& img);

// Whether this build can decode WebP (libwebp was found at configure time).
bool have_webp();

}  // namespace omni::io
