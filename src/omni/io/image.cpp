// PNG (libpng), JPEG (libjpeg-turbo) and WebP (libwebp) decoding to Pillow-identical RGB.
//
// libpng and libjpeg report fatal errors through callbacks that must not return (libjpeg's
// default handler even calls exit()); ours longjmp back to a setjmp in a small function that
// only calls the C library and writes through raw pointers, so no C++ object with a
// destructor is ever skipped and no C++ exception crosses C frames. The JPEG pixel buffer is
// allocated by C++ code between two such phases; the PNG one with malloc inside the callback.
#include "omni/io/image.h"
#include "omni/io/output_file.h"

#include <cctype>
#include <cerrno>
#include <csetjmp>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>

#include <jpeglib.h>
#include <jerror.h>
#include <png.h>
#ifdef OMNI_HAVE_WEBP
#include <webp/decode.h>
#endif

#include "omni/core/error.h"

namespace omni::io {

namespace {

// Larger than any image a model sees; protects against absurd headers (Pillow's own
// decompression-bomb limit is 2 × 89.5 MP).
constexpr uint64_t kMaxPixels = 1ull << 28;

void check_dimensions(uint64_t w, uint64_t h, const std::string& name, const char* format) {
  if (w == 0 || h == 0)
    throw Error(name, std::string("invalid ") + format + ": image size " + std::to_string(w) +
                          "x" + std::to_string(h));
  if (w * h > kMaxPixels)
    throw Error(name, std::string(format) + " image " + std::to_string(w) + "x" +
                          std::to_string(h) + " is too large (limit " +
                          std::to_string(kMaxPixels) + " pixels)");
}

// ============================== PNG ==============================
//
// libpng's progressive reader is fed the whole file. Like Pillow, which stops as soon as it
// has every pixel, a file is good when all rows were decoded, whatever follows (a missing
// IEND, zlib checksum or IDAT CRC); it is truncated when the data ends before that.

struct PngState {
  // header, filled by the info callback
  bool header_done = false;
  png_uint_32 width = 0, height = 0;
  int bit_depth = 0, color_type = 0, interlace = 0;
  size_t rowbytes = 0;
  png_color palette[256];
  int num_palette = 0;
  // tRNS, as libpng read it (palette alphas, or the raw 16-bit key colour of grey/RGB)
  bool has_trns = false;
  uint8_t trns_alpha[256];
  int num_trns = 0;
  png_color_16 trns_color{};
  // pixels: malloc'ed by the info callback (plain C, nothing there may throw)
  uint8_t* raw = nullptr;
  png_bytep* rows = nullptr;
  uint64_t rows_done = 0;  // decoded (pass) rows, counted by a user transform
  bool failed = false;
  char message[256] = {0};

  ~PngState() {
    std::free(raw);
    std::free(rows);
  }
};

void png_on_error(png_structp png, png_const_charp msg) {
  auto* st = static_cast<PngState*>(png_get_error_ptr(png));
  std::snprintf(st->message, sizeof st->message, "%s", msg ? msg : "unknown error");
  longjmp(png_jmpbuf(png), 1);
}

void png_on_warning(png_structp, png_const_charp) {}  // Pillow ignores these too

void png_count_row(png_structp png, png_row_infop, png_bytep) {
  ++static_cast<PngState*>(png_get_error_ptr(png))->rows_done;
}

void png_on_info(png_structp png, png_infop info) {
  auto* st = static_cast<PngState*>(png_get_progressive_ptr(png));
  png_get_IHDR(png, info, &st->width, &st->height, &st->bit_depth, &st->color_type,
               &st->interlace, nullptr, nullptr);
  const int ct = st->color_type;
  if (ct != PNG_COLOR_TYPE_GRAY && ct != PNG_COLOR_TYPE_RGB && ct != PNG_COLOR_TYPE_PALETTE &&
      ct != PNG_COLOR_TYPE_GRAY_ALPHA && ct != PNG_COLOR_TYPE_RGB_ALPHA)
    png_error(png, "unsupported colour type");
  if (static_cast<uint64_t>(st->width) * st->height > kMaxPixels) png_error(png, "image too large");
  if (st->bit_depth < 8) png_set_packing(png);  // one sample per byte, values not rescaled
  // 16-bit samples stay big-endian (libpng's default); no gamma, no expansion.
  if (st->interlace != PNG_INTERLACE_NONE) png_set_interlace_handling(png);
  png_set_read_user_transform_fn(png, png_count_row);
  png_read_update_info(png, info);
  // Pillow verifies the CRC of every chunk before the first IDAT, and of none after.
  png_set_crc_action(png, PNG_CRC_QUIET_USE, PNG_CRC_QUIET_USE);
  st->rowbytes = png_get_rowbytes(png, info);
  if (ct == PNG_COLOR_TYPE_PALETTE) {
    png_colorp pal = nullptr;
    int n = 0;
    if (png_get_PLTE(png, info, &pal, &n) && pal) {
      if (n > 256) n = 256;
      std::memcpy(st->palette, pal, sizeof(png_color) * n);
      st->num_palette = n;
    }
  }
  {
    png_bytep ta = nullptr;
    int nt = 0;
    png_color_16p tc = nullptr;
    if (png_get_tRNS(png, info, &ta, &nt, &tc) & PNG_INFO_tRNS) {
      st->has_trns = true;
      if (ct == PNG_COLOR_TYPE_PALETTE) {
        if (nt > 256) nt = 256;
        if (ta && nt > 0) std::memcpy(st->trns_alpha, ta, static_cast<size_t>(nt));
        st->num_trns = ta ? nt : 0;
      } else if (tc) {
        st->trns_color = *tc;
      }
    }
  }
  st->raw = static_cast<uint8_t*>(std::calloc(st->height, st->rowbytes));
  st->rows = static_cast<png_bytep*>(std::malloc(sizeof(png_bytep) * st->height));
  if (!st->raw || !st->rows) png_error(png, "out of memory");
  for (png_uint_32 y = 0; y < st->height; ++y) st->rows[y] = st->raw + st->rowbytes * y;
  st->header_done = true;
}

void png_on_row(png_structp png, png_bytep new_row, png_uint_32 row, int) {
  auto* st = static_cast<PngState*>(png_get_progressive_ptr(png));
  if (new_row && row < st->height) png_progressive_combine_row(png, st->rows[row], new_row);
}

// Feeds all bytes; false when libpng raised an error (st->message says which).
bool png_feed(png_structp png, png_infop info, const uint8_t* data, size_t size) {
  if (setjmp(png_jmpbuf(png))) return false;
  png_set_user_limits(png, 0x7fffffffL, 0x7fffffffL);
  png_set_crc_action(png, PNG_CRC_DEFAULT, PNG_CRC_ERROR_QUIT);  // bad CRC before IDAT: error
#ifdef PNG_CHECK_FOR_INVALID_INDEX_SUPPORTED
  png_set_check_for_invalid_index(png, 0);  // out-of-range indices are handled below
#endif
#ifdef PNG_BENIGN_ERRORS_SUPPORTED
  png_set_benign_errors(png, 1);
#endif
  png_process_data(png, info, const_cast<png_bytep>(data), size);
  return true;
}

// Rows libpng decodes: the image height, or for Adam7 the rows of the non-empty passes.
uint64_t png_expected_rows(const PngState& h) {
  if (h.interlace == PNG_INTERLACE_NONE) return h.height;
  uint64_t n = 0;
  for (int pass = 0; pass < 7; ++pass)
    if (PNG_PASS_COLS(h.width, pass) > 0) n += PNG_PASS_ROWS(h.height, pass);
  return n;
}

struct PngRead {
  png_structp png = nullptr;
  png_infop info = nullptr;
  ~PngRead() { png_destroy_read_struct(&png, info ? &info : nullptr, nullptr); }
};

// `alpha`: when not null, it receives one alpha byte per pixel if Pillow 9.4 opens the file as
// an image that BAGEL's pil_img2rgb composites (mode "RGBA", or a "transparency" entry in
// info), and is left empty otherwise; see decode_image_composited in image.h.
Image decode_png(const uint8_t* data, size_t size, const std::string& name,
                 std::vector<uint8_t>* alpha = nullptr) {
  PngState st;
  PngRead r;
  r.png = png_create_read_struct(PNG_LIBPNG_VER_STRING, &st, png_on_error, png_on_warning);
  if (!r.png) throw Error(name, "cannot decode PNG: out of memory");
  r.info = png_create_info_struct(r.png);
  if (!r.info) throw Error(name, "cannot decode PNG: out of memory");
  png_set_progressive_read_fn(r.png, &st, png_on_info, png_on_row, nullptr);

  const bool ok = png_feed(r.png, r.info, data, size);
  const bool complete = st.header_done && st.rows_done >= png_expected_rows(st);
  if (!complete) {
    if (!st.header_done) {
      if (ok) throw Error(name, "truncated PNG: the file ends before the image data");
      throw Error(name, std::string("invalid PNG: ") + st.message);
    }
    if (ok) throw Error(name, "truncated PNG: the image data ends early");
    throw Error(name, std::string("corrupt PNG image data: ") + st.message);
  }
  check_dimensions(st.width, st.height, name, "PNG");

  const int ct = st.color_type;
  const int w = static_cast<int>(st.width), ht = static_cast<int>(st.height);
  Image img(w, ht);
  const bool wide = st.bit_depth == 16;
  // Pillow 9.4 modes: RGBA (8/16 bit) and 16-bit grey+alpha (rawmode "LA;16B") open as "RGBA";
  // 8-bit grey+alpha opens as "LA", which pil_img2rgb does not composite. Any tRNS chunk of a
  // grey, RGB or palette image puts "transparency" in info.
  enum class Alpha { None, Channel, Palette, Key } amode = Alpha::None;
  if (alpha) {
    if (ct == PNG_COLOR_TYPE_RGB_ALPHA || (ct == PNG_COLOR_TYPE_GRAY_ALPHA && wide))
      amode = Alpha::Channel;
    else if (st.has_trns && ct == PNG_COLOR_TYPE_PALETTE)
      amode = Alpha::Palette;
    else if (st.has_trns && (ct == PNG_COLOR_TYPE_GRAY || ct == PNG_COLOR_TYPE_RGB))
      amode = Alpha::Key;
    alpha->clear();
    if (amode != Alpha::None) alpha->assign(static_cast<size_t>(w) * ht, 255);
  }
  // Pillow's convert_transparent compares the converted 8-bit pixel with the key's low bytes
  // (rgbT2rgba masks with 0xff), so 16-bit and sub-8-bit keys follow that rule, not the PNG spec.
  const int key_r = (ct == PNG_COLOR_TYPE_GRAY ? st.trns_color.gray : st.trns_color.red) & 0xff;
  const int key_g = (ct == PNG_COLOR_TYPE_GRAY ? st.trns_color.gray : st.trns_color.green) & 0xff;
  const int key_b = (ct == PNG_COLOR_TYPE_GRAY ? st.trns_color.gray : st.trns_color.blue) & 0xff;
  for (int y = 0; y < ht; ++y) {
    const uint8_t* in = st.rows[y];
    uint8_t* out = img.row(y);
    uint8_t* a = amode == Alpha::None ? nullptr : alpha->data() + static_cast<size_t>(y) * w;
    for (int x = 0; x < w; ++x, out += 3) {
      switch (ct) {
        case PNG_COLOR_TYPE_GRAY: {
          int v;
          if (wide) {
            // Pillow opens 16-bit grey as mode "I"; convert("RGB") clamps to 255.
            v = (in[2 * x] << 8) | in[2 * x + 1];
            if (v > 255) v = 255;
          } else if (st.bit_depth == 8) {
            v = in[x];
          } else {
            static const int scale[9] = {0, 255, 85, 0, 17, 0, 0, 0, 1};
            v = in[x] * scale[st.bit_depth];
          }
          out[0] = out[1] = out[2] = static_cast<uint8_t>(v);
          if (amode == Alpha::Key && v == key_r && v == key_g && v == key_b) a[x] = 0;
          break;
        }
        case PNG_COLOR_TYPE_GRAY_ALPHA: {
          const uint8_t v = wide ? in[4 * x] : in[2 * x];
          out[0] = out[1] = out[2] = v;
          if (amode == Alpha::Channel) a[x] = in[4 * x + 2];  // 16-bit only: high byte
          break;
        }
        case PNG_COLOR_TYPE_RGB: {
          const int s = wide ? 2 : 1;
          out[0] = in[(3 * x + 0) * s];
          out[1] = in[(3 * x + 1) * s];
          out[2] = in[(3 * x + 2) * s];
          if (amode == Alpha::Key && out[0] == key_r && out[1] == key_g && out[2] == key_b) a[x] = 0;
          break;
        }
        case PNG_COLOR_TYPE_RGB_ALPHA: {
          const int s = wide ? 2 : 1;
          out[0] = in[(4 * x + 0) * s];
          out[1] = in[(4 * x + 1) * s];
          out[2] = in[(4 * x + 2) * s];
          if (amode == Alpha::Channel) a[x] = in[(4 * x + 3) * s];
          break;
        }
        case PNG_COLOR_TYPE_PALETTE: {
          const int i = in[x];
          if (i < st.num_palette) {
            out[0] = st.palette[i].red;
            out[1] = st.palette[i].green;
            out[2] = st.palette[i].blue;
          } else {  // Pillow's palette starts as a grey ramp; PLTE overwrites its head
            out[0] = out[1] = out[2] = static_cast<uint8_t>(i);
          }
          // Pillow's palette alphas: tRNS entries first, 255 for every other index.
          if (amode == Alpha::Palette) a[x] = i < st.num_trns ? st.trns_alpha[i] : 255;
          break;
        }
      }
    }
  }
  return img;
}

// PNG encoding

struct PngWriteState {
  std::vector<uint8_t>* out = nullptr;
  char message[256] = {0};
};

void png_on_write(png_structp png, png_bytep data, size_t n) {
  auto* st = static_cast<PngWriteState*>(png_get_io_ptr(png));
  try {
    st->out->insert(st->out->end(), data, data + n);
  } catch (...) {
    png_error(png, "out of memory");
  }
}

void png_on_flush(png_structp) {}

void png_on_write_error(png_structp png, png_const_charp msg) {
  auto* st = static_cast<PngWriteState*>(png_get_error_ptr(png));
  std::snprintf(st->message, sizeof st->message, "%s", msg ? msg : "unknown error");
  longjmp(png_jmpbuf(png), 1);
}

bool png_write_all(png_structp png, png_infop info, int w, int h, png_bytepp rows) {
  if (setjmp(png_jmpbuf(png))) return false;
  png_set_IHDR(png, info, static_cast<png_uint_32>(w), static_cast<png_uint_32>(h), 8,
               PNG_COLOR_TYPE_RGB, PNG_INTERLACE_NONE, PNG_COMPRESSION_TYPE_DEFAULT,
               PNG_FILTER_TYPE_DEFAULT);
  png_write_info(png, info);
  png_write_image(png, rows);
  png_write_end(png, info);
  return true;
}

struct PngWrite {
  png_structp png = nullptr;
  png_infop info = nullptr;
  ~PngWrite() { png_destroy_write_struct(&png, info ? &info : nullptr); }
};

// ============================== JPEG ==============================

struct JpegError {
  jpeg_error_mgr pub;
  jmp_buf jump;
  bool truncated = false;
  char message[JMSG_LENGTH_MAX] = {0};
};

void jpeg_on_error(j_common_ptr cinfo) {
  auto* e = reinterpret_cast<JpegError*>(cinfo->err);
  (*cinfo->err->format_message)(cinfo, e->message);
  longjmp(e->jump, 1);
}

// Warnings (level -1) are ignored, like Pillow does, except running out of data: libjpeg then
// pads with a fake end marker and carries on, where Pillow's suspending source raises
// "image file is truncated" the first time the decoder wants a byte past the end.
void jpeg_on_message(j_common_ptr cinfo, int level) {
  if (level < 0 && cinfo->err->msg_code == JWRN_JPEG_EOF) {
    auto* e = reinterpret_cast<JpegError*>(cinfo->err);
    e->truncated = true;
    (*cinfo->err->format_message)(cinfo, e->message);
    longjmp(e->jump, 1);
  }
}

struct JpegRead {
  jpeg_decompress_struct cinfo;
  JpegError err;
  bool created = false;
  ~JpegRead() {
    if (created) jpeg_destroy_decompress(&cinfo);
  }
};

bool jpeg_start(JpegRead* r, const uint8_t* data, size_t size) {
  if (setjmp(r->err.jump)) return false;
  jpeg_create_decompress(&r->cinfo);
  r->created = true;
  jpeg_mem_src(&r->cinfo, data, static_cast<unsigned long>(size));
  jpeg_read_header(&r->cinfo, TRUE);
  // Pillow's choice of output space: by component count (1 → L, 3 → RGB, 4 → CMYK).
  switch (r->cinfo.num_components) {
    case 1: r->cinfo.out_color_space = JCS_GRAYSCALE; break;
    case 3: r->cinfo.out_color_space = JCS_RGB; break;
    case 4: r->cinfo.out_color_space = JCS_CMYK; break;
    default: return true;  // refused by the caller
  }
  // Pillow's defaults (no draft mode): accurate integer DCT, fancy upsampling.
  r->cinfo.dct_method = JDCT_ISLOW;
  r->cinfo.do_fancy_upsampling = TRUE;
  jpeg_start_decompress(&r->cinfo);
  return true;
}

bool jpeg_read_all(JpegRead* r, uint8_t* buf, size_t stride) {
  if (setjmp(r->err.jump)) return false;
  while (r->cinfo.output_scanline < r->cinfo.output_height) {
    JSAMPROW row = buf + stride * r->cinfo.output_scanline;
    jpeg_read_scanlines(&r->cinfo, &row, 1);
  }
  // No jpeg_finish_decompress: Pillow stops after the last scanline and never looks for the
  // end marker of a baseline image (a progressive one needs it to finish the scans).
  return true;
}

inline int muldiv255(int a, int b) {
  const int t = a * b + 128;
  return ((t >> 8) + t) >> 8;
}

Image decode_jpeg(const uint8_t* data, size_t size, const std::string& name) {
  JpegRead r;
  r.cinfo.err = jpeg_std_error(&r.err.pub);
  r.err.pub.error_exit = jpeg_on_error;
  r.err.pub.emit_message = jpeg_on_message;
  if (!jpeg_start(&r, data, size)) {
    if (r.err.truncated) throw Error(name, "truncated JPEG: the file ends early");
    throw Error(name, std::string("invalid JPEG: ") + r.err.message);
  }
  const int nc = r.cinfo.num_components;
  if (nc != 1 && nc != 3 && nc != 4)
    throw Error(name, "unsupported JPEG with " + std::to_string(nc) + " components");
  const uint64_t w = r.cinfo.output_width, h = r.cinfo.output_height;
  check_dimensions(w, h, name, "JPEG");
  const int oc = r.cinfo.output_components;
  const size_t stride = static_cast<size_t>(w) * oc;
  std::vector<uint8_t> buf(stride * h);
  if (!jpeg_read_all(&r, buf.data(), stride)) {
    if (r.err.truncated) throw Error(name, "truncated JPEG: the file ends early");
    throw Error(name, std::string("corrupt JPEG data: ") + r.err.message);
  }

  Image img(static_cast<int>(w), static_cast<int>(h));
  const size_t n = static_cast<size_t>(w) * h;
  if (oc == 3) {
    img.rgb = std::move(buf);
  } else if (oc == 1) {
    for (size_t i = 0; i < n; ++i) img.rgb[3 * i] = img.rgb[3 * i + 1] = img.rgb[3 * i + 2] = buf[i];
  } else {
    // Adobe CMYK is stored inverted; Pillow reads it as "CMYK;I" (c = 255 - stored), then
    // converts: nk = 255 - k, channel = nk - nk·c/255 (rounded).
    for (size_t i = 0; i < n; ++i) {
      const uint8_t* p = &buf[4 * i];
      const int nk = p[3];  // = 255 - k
      for (int ch = 0; ch < 3; ++ch) {
        int v = nk - muldiv255(255 - p[ch], nk);
        img.rgb[3 * i + ch] = static_cast<uint8_t>(v < 0 ? 0 : v > 255 ? 255 : v);
      }
    }
  }
  return img;
}

// ============================== WebP ==============================

#ifdef OMNI_HAVE_WEBP
// `alpha`: when not null, receives the alpha plane if the file has an alpha channel (Pillow
// then opens it as "RGBA"), and is left empty otherwise.
Image decode_webp(const uint8_t* data, size_t size, const std::string& name,
                  std::vector<uint8_t>* alpha = nullptr) {
  WebPBitstreamFeatures f;
  const VP8StatusCode status = WebPGetFeatures(data, size, &f);
  if (status == VP8_STATUS_NOT_ENOUGH_DATA) throw Error(name, "truncated WebP: the file ends early");
  if (status != VP8_STATUS_OK)
    throw Error(name, "invalid WebP (libwebp status " + std::to_string(status) + ")");
  if (f.has_animation) throw Error(name, "unsupported: animated WebP");
  check_dimensions(static_cast<uint64_t>(f.width), static_cast<uint64_t>(f.height), name, "WebP");
  const size_t n = static_cast<size_t>(f.width) * f.height;
  std::vector<uint8_t> rgba(n * 4);
  // Pillow decodes to non-premultiplied RGBA (RGBX without alpha) and drops the alpha.
  if (!WebPDecodeRGBAInto(data, size, rgba.data(), rgba.size(), f.width * 4))
    throw Error(name, "corrupt or truncated WebP data");
  Image img(f.width, f.height);
  for (size_t i = 0; i < n; ++i) {
    img.rgb[3 * i] = rgba[4 * i];
    img.rgb[3 * i + 1] = rgba[4 * i + 1];
    img.rgb[3 * i + 2] = rgba[4 * i + 2];
  }
  if (alpha) {
    alpha->clear();
    if (f.has_alpha) {
      alpha->resize(n);
      for (size_t i = 0; i < n; ++i) (*alpha)[i] = rgba[4 * i + 3];
    }
  }
  return img;
}
#endif

// ============================== detection ==============================

const char* other_format(const uint8_t* d, size_t n) {
  auto starts = [&](const char* sig, size_t len) { return n >= len && std::memcmp(d, sig, len) == 0; };
  if (starts("GIF87a", 6) || starts("GIF89a", 6)) return "GIF";
  if (starts("BM", 2)) return "BMP";
  if (starts("II*\0", 4) || starts("MM\0*", 4)) return "TIFF";
  if (n >= 12 && std::memcmp(d + 4, "ftyp", 4) == 0) return "HEIF/AVIF";
  if (starts("\0\0\0\x0cjP  ", 8) || starts("\xff\x4f\xff\x51", 4)) return "JPEG 2000";
  if (starts("qoif", 4)) return "QOI";
  return nullptr;
}

}  // namespace

bool have_webp() {
#ifdef OMNI_HAVE_WEBP
  return true;
#else
  return false;
#endif
}

namespace {

// Detects the format and decodes; `alpha` as in decode_png / decode_webp (JPEG never has one).
Image decode_any(const uint8_t* data, size_t size, const std::string& name,
                 std::vector<uint8_t>* alpha) {
  if (alpha) alpha->clear();
  if (size == 0 || data == nullptr) throw Error(name, "not an image: the file is empty");
  static const uint8_t png_sig[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
  if (size >= 8 && std::memcmp(data, png_sig, 8) == 0) return decode_png(data, size, name, alpha);
  if (size >= 3 && data[0] == 0xff && data[1] == 0xd8 && data[2] == 0xff)
    return decode_jpeg(data, size, name);
  if (size >= 12 && std::memcmp(data, "RIFF", 4) == 0 && std::memcmp(data + 8, "WEBP", 4) == 0) {
#ifdef OMNI_HAVE_WEBP
    return decode_webp(data, size, name, alpha);
#else
    throw Error(name, "unsupported format: WebP (this build has no libwebp)");
#endif
  }
  if (size < 8 && std::memcmp(data, png_sig, size) == 0)
    throw Error(name, "truncated PNG: the file ends inside the signature");
  if (const char* fmt = other_format(data, size))
    throw Error(name, std::string("unsupported image format: ") + fmt +
                          " (supported: PNG, JPEG" + (have_webp() ? ", WebP" : "") + ")");
  throw Error(name, "not an image: unrecognised file signature (supported: PNG, JPEG" +
                        std::string(have_webp() ? ", WebP" : "") + ")");
}

std::vector<uint8_t> read_file_bytes(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) throw Error(path, std::string("cannot open image: ") + std::strerror(errno));
  std::vector<uint8_t> bytes((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  if (f.bad()) throw Error(path, std::string("cannot read image: ") + std::strerror(errno));
  return bytes;
}

}  // namespace

Image decode_image(const uint8_t* data, size_t size, const std::string& name) {
  return decode_any(data, size, name, nullptr);
}

Image read_image(const std::string& path) {
  const std::vector<uint8_t> bytes = read_file_bytes(path);
  return decode_image(bytes.data(), bytes.size(), path);
}

Image composite_alpha(const Image& rgb, const uint8_t* alpha, uint8_t r, uint8_t g, uint8_t b) {
  check(rgb.rgb.size() == static_cast<size_t>(rgb.width) * rgb.height * 3, "composite_alpha",
        "image buffer size does not match its dimensions");
  Image out(rgb.width, rgb.height);
  const uint8_t bg[3] = {r, g, b};
  const size_t n = static_cast<size_t>(rgb.width) * rgb.height;
  for (size_t i = 0; i < n; ++i) {
    const unsigned a = alpha[i];
    for (int c = 0; c < 3; ++c) {
      // Pillow's BLEND(mask, in1, in2) = DIV255(in1·(255-mask) + in2·mask), with
      // DIV255(x) = ((x+128) + ((x+128) >> 8)) >> 8; in1 is the canvas, in2 the pasted pixel.
      const unsigned t = bg[c] * (255u - a) + rgb.rgb[3 * i + c] * a + 128u;
      out.rgb[3 * i + c] = static_cast<uint8_t>(((t >> 8) + t) >> 8);
    }
  }
  return out;
}

Image composite_rgba(const uint8_t* rgba, int width, int height, uint8_t r, uint8_t g,
                     uint8_t b) {
  check(width > 0 && height > 0, "composite_rgba",
        "image size " + std::to_string(width) + "x" + std::to_string(height) + " is empty");
  Image rgb(width, height);
  const size_t n = static_cast<size_t>(width) * height;
  std::vector<uint8_t> alpha(n);
  for (size_t i = 0; i < n; ++i) {
    rgb.rgb[3 * i] = rgba[4 * i];
    rgb.rgb[3 * i + 1] = rgba[4 * i + 1];
    rgb.rgb[3 * i + 2] = rgba[4 * i + 2];
    alpha[i] = rgba[4 * i + 3];
  }
  return composite_alpha(rgb, alpha.data(), r, g, b);
}

Image decode_image_composited(const uint8_t* data, size_t size, const std::string& name,
                              uint8_t r, uint8_t g, uint8_t b) {
  std::vector<uint8_t> alpha;
  Image img = decode_any(data, size, name, &alpha);
  if (alpha.empty()) return img;
  return composite_alpha(img, alpha.data(), r, g, b);
}

Image read_image_composited(const std::string& path, uint8_t r, uint8_t g, uint8_t b) {
  const std::vector<uint8_t> bytes = read_file_bytes(path);
  return decode_image_composited(bytes.data(), bytes.size(), path, r, g, b);
}

std::vector<uint8_t> encode_png(const Image& img) {
  check(img.width > 0 && img.height > 0, "PNG encoder",
        "image size " + std::to_string(img.width) + "x" + std::to_string(img.height) +
            " is empty");
  check(img.rgb.size() == static_cast<size_t>(img.width) * img.height * 3, "PNG encoder",
        "image buffer size does not match its dimensions");
  std::vector<uint8_t> out;
  PngWriteState st;
  st.out = &out;
  PngWrite w;
  w.png = png_create_write_struct(PNG_LIBPNG_VER_STRING, &st, png_on_write_error, png_on_warning);
  if (!w.png) throw Error("PNG encoder", "out of memory");
  w.info = png_create_info_struct(w.png);
  if (!w.info) throw Error("PNG encoder", "out of memory");
  png_set_write_fn(w.png, &st, png_on_write, png_on_flush);
  std::vector<png_bytep> rows(img.height);
  for (int y = 0; y < img.height; ++y) rows[y] = const_cast<uint8_t*>(img.row(y));
  if (!png_write_all(w.png, w.info, img.width, img.height, rows.data()))
    throw Error("PNG encoder", st.message);
  return out;
}

namespace {
struct JpegWrite {
  jpeg_compress_struct cinfo;
  JpegError err;
  bool created = false;
  unsigned char* mem = nullptr;
  unsigned long size = 0;
  ~JpegWrite() {
    if (created) jpeg_destroy_compress(&cinfo);
    std::free(mem);
  }
};

// setjmp in a function without objects to destroy (libjpeg's error_exit longjmps back here).
bool jpeg_write_all(JpegWrite* w, const Image& img, int quality) {
  if (setjmp(w->err.jump)) return false;
  jpeg_create_compress(&w->cinfo);
  w->created = true;
  jpeg_mem_dest(&w->cinfo, &w->mem, &w->size);
  w->cinfo.image_width = static_cast<JDIMENSION>(img.width);
  w->cinfo.image_height = static_cast<JDIMENSION>(img.height);
  w->cinfo.input_components = 3;
  w->cinfo.in_color_space = JCS_RGB;
  jpeg_set_defaults(&w->cinfo);
  jpeg_set_quality(&w->cinfo, quality, TRUE);
  // 4:4:4, no chroma subsampling: generated images are small and their colour edges sharp
  for (int c = 0; c < w->cinfo.num_components; ++c) w->cinfo.comp_info[c].h_samp_factor = w->cinfo.comp_info[c].v_samp_factor = 1;
  jpeg_start_compress(&w->cinfo, TRUE);
  while (w->cinfo.next_scanline < w->cinfo.image_height) {
    JSAMPROW row = const_cast<uint8_t*>(img.row(static_cast<int>(w->cinfo.next_scanline)));
    jpeg_write_scanlines(&w->cinfo, &row, 1);
  }
  jpeg_finish_compress(&w->cinfo);
  return true;
}

std::string lower_extension(const std::string& path) {
  std::string ext = std::filesystem::path(path).extension().string();
  for (auto& c : ext) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return ext;
}
}  // namespace

std::vector<uint8_t> encode_jpeg(const Image& img, int quality) {
  check(img.width > 0 && img.height > 0, "JPEG encoder",
        "image size " + std::to_string(img.width) + "x" + std::to_string(img.height) + " is empty");
  check(img.rgb.size() == static_cast<size_t>(img.width) * img.height * 3, "JPEG encoder",
        "image buffer size does not match its dimensions");
  check(img.width <= JPEG_MAX_DIMENSION && img.height <= JPEG_MAX_DIMENSION, "JPEG encoder",
        "image size " + std::to_string(img.width) + "x" + std::to_string(img.height) + " is over JPEG's " +
            std::to_string(JPEG_MAX_DIMENSION) + " pixels a side");
  check(quality >= 1 && quality <= 100, "JPEG encoder", "quality must be in 1..100");
  JpegWrite w;
  w.cinfo.err = jpeg_std_error(&w.err.pub);
  w.err.pub.error_exit = jpeg_on_error;
  if (!jpeg_write_all(&w, img, quality)) throw Error("JPEG encoder", w.err.message);
  return std::vector<uint8_t>(w.mem, w.mem + w.size);
}

ImageFormat output_image_format(const std::string& path, const std::string& what) {
  const std::string ext = lower_extension(path);
  if (ext.empty() || ext == ".png") return ImageFormat::png;
  if (ext == ".jpg" || ext == ".jpeg") return ImageFormat::jpeg;
  throw Error(what, "cannot write '" + ext + "' images (write .png, .jpg or .jpeg)");
}

void write_image(const std::string& path, const Image& img) {
  if (output_image_format(path, path) == ImageFormat::png) return write_png(path, img);
  std::vector<uint8_t> bytes;
  try {
    bytes = encode_jpeg(img);
  } catch (const Error& e) {
    throw e.with_context(path);
  }
  write_file_atomically(path, bytes.data(), bytes.size());
}

void write_png(const std::string& path, const Image& img) {
  std::vector<uint8_t> bytes;
  try {
    bytes = encode_png(img);
  } catch (const Error& e) {
    throw e.with_context(path);
  }
  write_file_atomically(path, bytes.data(), bytes.size());  // no partial PNG if the write fails
}

}  // namespace omni::io
