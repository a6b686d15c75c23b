// Image decode/encode and Pillow-exact resize. Expected outputs come from Pillow 9.4
// (scripts/dev/make_image_fixtures.py; see tests/fixtures/images/README.md).
#include <gtest/gtest.h>

#include <sys/resource.h>

#include <algorithm>
#include <csignal>
#include <filesystem>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "omni/core/error.h"
#include "omni/io/image.h"
#include "omni/io/output_file.h"
#include "omni/io/resize.h"
#include "test_paths.h"

using namespace omni;
using namespace omni::io;

namespace {

std::string fx(const std::string& name) { return std::string(OMNI_FIXTURES) + "/images/" + name; }

// Non-comment, non-empty lines of a manifest, split on whitespace.
std::vector<std::vector<std::string>> manifest(const std::string& name) {
  std::ifstream f(fx(name));
  EXPECT_TRUE(f.good()) << "missing fixture " << fx(name)
                        << " (regenerate with scripts/dev/make_image_fixtures.py)";
  std::vector<std::vector<std::string>> rows;
  std::string line;
  while (std::getline(f, line)) {
    if (line.empty() || line[0] == '#') continue;
    std::istringstream is(line);
    std::vector<std::string> row;
    for (std::string tok; is >> tok;) row.push_back(tok);
    if (!row.empty()) rows.push_back(row);
  }
  return rows;
}

std::vector<uint8_t> read_bytes(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  return std::vector<uint8_t>((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
}

// "" when equal, otherwise a description with the worst difference and how many differ.
std::string compare(const Image& got, const Image& want) {
  std::ostringstream os;
  if (got.width != want.width || got.height != want.height) {
    os << "size " << got.width << "x" << got.height << ", expected " << want.width << "x"
       << want.height;
    return os.str();
  }
  int worst = 0, wx = 0, wy = 0, wc = 0;
  size_t count = 0;
  for (int y = 0; y < want.height; ++y)
    for (int x = 0; x < want.width; ++x)
      for (int c = 0; c < 3; ++c) {
        const int d = std::abs(int(got.at(x, y, c)) - int(want.at(x, y, c)));
        if (d) ++count;
        if (d > worst) worst = d, wx = x, wy = y, wc = c;
      }
  if (count == 0) return "";
  os << count << " of " << want.rgb.size() << " values differ, max |diff| " << worst << " at (x "
     << wx << ", y " << wy << ", c " << wc << "): got " << int(got.at(wx, wy, wc)) << ", want "
     << int(want.at(wx, wy, wc));
  return os.str();
}

uint32_t crc32(const std::vector<uint8_t>& data) {
  static uint32_t table[256];
  static bool init = false;
  if (!init) {
    for (uint32_t i = 0; i < 256; ++i) {
      uint32_t c = i;
      for (int k = 0; k < 8; ++k) c = (c & 1) ? 0xedb88320u ^ (c >> 1) : c >> 1;
      table[i] = c;
    }
    init = true;
  }
  uint32_t c = 0xffffffffu;
  for (uint8_t b : data) c = table[(c ^ b) & 0xff] ^ (c >> 8);
  return c ^ 0xffffffffu;
}

Image random_image(int w, int h, unsigned seed) {
  std::mt19937 rng(seed);
  Image img(w, h);
  for (auto& v : img.rgb) v = static_cast<uint8_t>(rng() & 0xff);
  return img;
}

Resample filter(const std::string& name) { return parse_resample(name, "fixture"); }

}  // namespace

// ------------------------------------------------------------------ decoding

TEST(ImageDecode, MatchesPillowConvertRGB) {
  const auto cases = manifest("decode_cases.txt");
  ASSERT_GE(cases.size(), 30u);
  int checked = 0;
  for (const auto& c : cases) {
    ASSERT_GE(c.size(), 2u);
    if (c.size() > 2 && c[2] == "webp" && !have_webp()) {
      EXPECT_THROW(read_image(fx(c[0])), Error);
      continue;
    }
    Image got, want;
    try {
      got = read_image(fx(c[0]));
      want = read_image(fx(c[1]));
    } catch (const Error& e) {
      ADD_FAILURE() << c[0] << ": " << e.what();
      continue;
    }
    EXPECT_EQ(compare(got, want), "") << c[0] << " vs Pillow's " << c[1];
    ++checked;
  }
  std::printf("decode: %d files equal Pillow's convert(\"RGB\")\n", checked);
}

TEST(ImageDecode, BadInputsThrowErrorsNamingTheFile) {
  const auto cases = manifest("bad_cases.txt");
  ASSERT_GE(cases.size(), 10u);
  for (const auto& c : cases) {
    std::string expect;
    for (size_t i = 1; i < c.size(); ++i) expect += (i > 1 ? " " : "") + c[i];
    try {
      read_image(fx(c[0]));
      ADD_FAILURE() << c[0] << ": decoded, expected an error containing '" << expect << "'";
    } catch (const Error& e) {
      const std::string msg = e.what();
      EXPECT_NE(msg.find(fx(c[0])), std::string::npos) << msg;
      EXPECT_NE(msg.find(expect), std::string::npos) << c[0] << ": " << msg;
    }
  }
}

TEST(ImageDecode, MissingFile) {
  const std::string p = fx("no_such_image.png");
  try {
    read_image(p);
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(p), std::string::npos);
    EXPECT_NE(std::string(e.what()).find("cannot open"), std::string::npos) << e.what();
  }
}

TEST(ImageDecode, MemoryDecodeUsesTheGivenName) {
  const std::vector<uint8_t> junk = {'G', 'I', 'F', '8', '9', 'a', 0, 0};
  try {
    decode_image(junk.data(), junk.size(), "upload #3");
    FAIL();
  } catch (const Error& e) {
    EXPECT_EQ(std::string(e.what()).rfind("upload #3: unsupported image format: GIF", 0), 0u)
        << e.what();
  }
  EXPECT_THROW(decode_image(nullptr, 0, "x"), Error);
}

// Every prefix and many single-byte corruptions of valid files: an error or an image, never a
// crash (libpng/libjpeg errors longjmp out; nothing may call exit()).
TEST(ImageDecode, TruncatedAndCorruptInputsNeverCrash) {
  for (const char* name : {"dec_rgb8.png", "dec_rgb8_adam7.png", "dec_palette4.png",
                           "dec_jpeg_420.jpg", "dec_jpeg_progressive.jpg", "dec_jpeg_cmyk.jpg",
                           "dec_webp_lossy.webp"}) {
    const auto bytes = read_bytes(fx(name));
    ASSERT_FALSE(bytes.empty()) << name;
    const Image full = have_webp() || std::string(name).find("webp") == std::string::npos
                           ? read_image(fx(name))
                           : Image();
    int errors = 0, decoded = 0;
    const size_t step = std::max<size_t>(1, bytes.size() / 300);
    for (size_t n = 0; n < bytes.size(); n += step) {
      try {
        Image img = decode_image(bytes.data(), n, name);
        EXPECT_EQ(img.width, full.width) << name << " cut at " << n;
        ++decoded;
      } catch (const Error&) {
        ++errors;
      }
    }
    std::mt19937 rng(7);
    for (int i = 0; i < 300; ++i) {
      auto b = bytes;
      const size_t pos = rng() % b.size();
      b[pos] = static_cast<uint8_t>(b[pos] ^ (1 + rng() % 255));
      try {
        Image img = decode_image(b.data(), b.size(), name);
        EXPECT_EQ(img.rgb.size(), static_cast<size_t>(img.width) * img.height * 3);
      } catch (const Error&) {
        ++errors;
      }
    }
    EXPECT_GT(errors, 0) << name;
  }
}

// ------------------------------------------------------------------ encoding

TEST(ImagePng, EncodeDecodeRoundTrip) {
  for (auto [w, h] : {std::pair{1, 1}, {7, 5}, {33, 17}, {256, 3}, {3, 300}}) {
    const Image img = random_image(w, h, static_cast<unsigned>(w * 1000 + h));
    const auto png = encode_png(img);
    ASSERT_GT(png.size(), 8u);
    const Image back = decode_image(png.data(), png.size(), "roundtrip");
    EXPECT_EQ(compare(back, img), "") << w << "x" << h;
  }
  const Image img = read_image(fx("in_photo_640x427.png"));
  const std::string tmp = std::string(OMNI_BINARY_DIR) + "/test_image_roundtrip.png";
  write_png(tmp, img);
  EXPECT_EQ(compare(read_image(tmp), img), "");
  std::remove(tmp.c_str());
}

TEST(ImagePng, EncodeErrors) {
  Image bad(4, 4);
  bad.rgb.resize(5);
  EXPECT_THROW(encode_png(bad), Error);
  EXPECT_THROW(encode_png(Image()), Error);
  try {
    write_png("/nonexistent-dir/x.png", Image(2, 2));
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("/nonexistent-dir/x.png"), std::string::npos);
  }
}

// JPEG output: baseline RGB at quality 95 decodes to the same size and close to the input (a
// smooth image: every channel within a few levels on average); the extension picks the format
// (case-insensitive; none = PNG) and any other extension is refused, naming the ones written.
TEST(ImageJpeg, EncodeDecodeAndTheFormatFromTheExtension) {
  for (auto [w, h] : {std::pair{1, 1}, {7, 5}, {64, 48}, {3, 300}}) {
    Image img(w, h);
    for (int y = 0; y < h; ++y)
      for (int x = 0; x < w; ++x) {
        img.at(x, y, 0) = static_cast<uint8_t>(255 * x / std::max(1, w - 1));
        img.at(x, y, 1) = static_cast<uint8_t>(255 * y / std::max(1, h - 1));
        img.at(x, y, 2) = 128;
      }
    const auto jpg = encode_jpeg(img);
    ASSERT_GT(jpg.size(), 3u);
    EXPECT_EQ(jpg[0], 0xFF);
    EXPECT_EQ(jpg[1], 0xD8);
    const Image back = decode_image(jpg.data(), jpg.size(), "roundtrip.jpg");
    ASSERT_EQ(back.width, w);
    ASSERT_EQ(back.height, h);
    double err = 0;
    for (size_t i = 0; i < img.rgb.size(); ++i) err += std::abs(int(back.rgb[i]) - int(img.rgb[i]));
    EXPECT_LT(err / img.rgb.size(), 3.0) << w << "x" << h;
  }
  EXPECT_THROW(encode_jpeg(Image()), Error);
  EXPECT_THROW(encode_jpeg(Image(2, 2), 0), Error);
  EXPECT_EQ(output_image_format("a/b.png", "--output"), ImageFormat::png);
  EXPECT_EQ(output_image_format("a/b", "--output"), ImageFormat::png);
  EXPECT_EQ(output_image_format("a/b.JPG", "--output"), ImageFormat::jpeg);
  EXPECT_EQ(output_image_format("a/b.jpeg", "--output"), ImageFormat::jpeg);
  try {
    output_image_format("a/b.webp", "--output a/b.webp");
    FAIL();
  } catch (const Error& e) {
    EXPECT_EQ(std::string(e.what()), "--output a/b.webp: cannot write '.webp' images (write .png, .jpg or .jpeg)");
  }
  const Image img = read_image(fx("in_photo_640x427.png"));
  const std::string base = std::string(OMNI_BINARY_DIR) + "/test_image_write";
  write_image(base + ".jpg", img);
  write_image(base + ".png", img);
  EXPECT_EQ(std::ifstream(base + ".jpg", std::ios::binary).get(), 0xFF);
  EXPECT_EQ(compare(read_image(base + ".png"), img), "");  // PNG stays lossless
  const Image back = read_image(base + ".jpg");
  EXPECT_EQ(back.width, 640);
  EXPECT_EQ(back.height, 427);
  EXPECT_THROW(write_image(base + ".bmp", img), Error);
  for (const char* ext : {".jpg", ".png"}) std::remove((base + ext).c_str());
}

// An output file goes through a temporary renamed into place: a write that fails (here the file
// size limit, as a full disk) leaves the old file as it was and no temporary; a device is never
// replaced; a path that names one of the run's inputs is refused before any work.
TEST(OutputFile, FailedWritesKeepTheOldFileAndInputsAreRefused) {
  const std::string dir = std::string(OMNI_BINARY_DIR) + "/test_output_file";
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir + "/model");
  const std::string out = dir + "/out.png";
  std::ofstream(out) << "old";
  std::ofstream(dir + "/model/weights.bin") << "weights";
  rlimit saved{};
  ASSERT_EQ(getrlimit(RLIMIT_FSIZE, &saved), 0);
  auto* prev = std::signal(SIGXFSZ, SIG_IGN);
  rlimit small = saved;
  small.rlim_cur = 16;
  ASSERT_EQ(setrlimit(RLIMIT_FSIZE, &small), 0);
  const Image img = random_image(64, 64, 5);  // a PNG of ~12 KB
  EXPECT_THROW(write_png(out, img), Error);
  setrlimit(RLIMIT_FSIZE, &saved);
  std::signal(SIGXFSZ, prev);
  std::ifstream in(out);
  std::string kept;
  in >> kept;
  EXPECT_EQ(kept, "old");
  EXPECT_FALSE(std::filesystem::exists(out + ".tmp"));
  write_png(out, img);
  EXPECT_EQ(compare(read_image(out), img), "");
  EXPECT_THROW(write_file_atomically("/dev/null", "x", 1), Error);
  EXPECT_TRUE(std::filesystem::is_character_file("/dev/null"));
  const auto refused = [&](const std::string& path, const std::vector<std::string>& inputs, const std::string& why) {
    try {
      check_output_path("--output", path, inputs);
      ADD_FAILURE() << path << " accepted";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(why), std::string::npos) << e.what();
    }
  };
  refused(out, {out}, "is one of this run's inputs");
  refused(dir + "/model/../model/weights.bin", {dir + "/model"}, "is one of this run's inputs");
  refused("/dev/null", {}, "is not a regular file");
  refused(dir, {}, "is a directory");
  refused(dir + "/no/such/x.png", {}, "the output directory does not exist");
  EXPECT_NO_THROW(check_output_path("--output", out, {dir + "/model", dir + "/other.png"}));
  EXPECT_NO_THROW(check_output_path("--output", dir + "/new.png", {out}));
  std::filesystem::remove_all(dir);
}

// ------------------------------------------------------------------ resize

TEST(ResizePil, MatchesPillowFixturesExactly) {
  const auto cases = manifest("resize_cases.txt");
  ASSERT_GE(cases.size(), 100u);
  int n = 0;
  for (const auto& c : cases) {
    ASSERT_EQ(c.size(), 5u);
    const Image src = read_image(fx(c[0]));
    const Image want = read_image(fx(c[4]));
    const Image got = resize(src, std::stoi(c[1]), std::stoi(c[2]), filter(c[3]));
    EXPECT_EQ(compare(got, want), "")
        << c[0] << " -> " << c[1] << "x" << c[2] << " " << c[3] << " (" << c[4] << ")";
    ++n;
  }
  std::printf("resize: %d cases, all checked for max |diff| = 0\n", n);
}

TEST(ResizePil, MatchesPillowSweepChecksums) {
  const auto cases = manifest("resize_sweep.txt");
  ASSERT_GE(cases.size(), 1000u);
  std::string last;
  Image src;
  int bad = 0;
  for (const auto& c : cases) {
    ASSERT_EQ(c.size(), 5u);
    if (c[0] != last) src = read_image(fx(c[0])), last = c[0];
    const Image got = resize(src, std::stoi(c[1]), std::stoi(c[2]), filter(c[3]));
    char hex[16];
    std::snprintf(hex, sizeof hex, "%08x", crc32(got.rgb));
    if (c[4] != hex) {
      ++bad;
      ADD_FAILURE() << c[0] << " -> " << c[1] << "x" << c[2] << " " << c[3]
                    << ": output CRC32 " << hex << ", Pillow's " << c[4];
    }
  }
  std::printf("resize sweep: %zu cases (6 filters), %d mismatches\n", cases.size(), bad);
}

TEST(ResizePil, JanusNonSquareFixture) {
  // VLMImageProcessor.resize: 480x300 -> (w 384, h int(300/480*384) = 240), PIL bicubic, then
  // expand2square with background (127,127,127): top offset 72.
  const Image src = read_image(fx("janus_nonsquare_input.png"));
  ASSERT_EQ(src.width, 480);
  ASSERT_EQ(src.height, 300);
  const Image want = read_image(fx("janus_nonsquare_resized.png"));
  const Image resized = resize(src, 384, 240, Resample::Bicubic);
  const Image got = expand_to_square(resized, 127, 127, 127);
  EXPECT_EQ(compare(got, want), "");
}

TEST(ResizePil, SameSizeIsACopyAndBadSizesThrow) {
  const Image img = random_image(9, 4, 1);
  for (int r = 0; r <= 5; ++r) EXPECT_EQ(resize(img, 9, 4, static_cast<Resample>(r)).rgb, img.rgb);
  EXPECT_THROW(resize(img, 0, 4, Resample::Bicubic), Error);
  EXPECT_THROW(resize(img, 3, -1, Resample::Nearest), Error);
  EXPECT_THROW(resize(Image(), 3, 3, Resample::Bilinear), Error);
}

TEST(ResizePil, FilterNamesAndCodes) {
  EXPECT_EQ(resample_from_pil(3), Resample::Bicubic);
  EXPECT_EQ(resample_from_pil(1), Resample::Lanczos);
  EXPECT_EQ(resample_from_pil(0), Resample::Nearest);
  EXPECT_EQ(resample_from_pil(2), Resample::Bilinear);
  EXPECT_THROW(resample_from_pil(6), Error);
  EXPECT_EQ(parse_resample("BICUBIC"), Resample::Bicubic);
  EXPECT_EQ(parse_resample("antialias"), Resample::Lanczos);
  EXPECT_THROW(parse_resample("cubic"), Error);
}

TEST(ResizeGeometry, ExpandToSquareMatchesJanus) {
  const auto cases = manifest("square_cases.txt");
  ASSERT_GE(cases.size(), 5u);
  for (const auto& c : cases) {
    ASSERT_EQ(c.size(), 5u);
    const Image got =
        expand_to_square(read_image(fx(c[0])), static_cast<uint8_t>(std::stoi(c[1])),
                         static_cast<uint8_t>(std::stoi(c[2])), static_cast<uint8_t>(std::stoi(c[3])));
    EXPECT_EQ(compare(got, read_image(fx(c[4]))), "") << c[0];
  }
}

TEST(ResizeGeometry, CenterCropMatchesTorchvision) {
  const auto cases = manifest("crop_cases.txt");
  ASSERT_GE(cases.size(), 10u);
  for (const auto& c : cases) {
    ASSERT_EQ(c.size(), 4u);
    const Image got = center_crop(read_image(fx(c[0])), std::stoi(c[1]), std::stoi(c[2]));
    EXPECT_EQ(compare(got, read_image(fx(c[3]))), "") << c[0] << " -> " << c[1] << "x" << c[2];
  }
  EXPECT_THROW(center_crop(Image(3, 3), 0, 2), Error);
  EXPECT_THROW(crop(Image(3, 3), 1, 1, 3, 1), Error);
}
