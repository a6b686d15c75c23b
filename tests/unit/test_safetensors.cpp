// safetensors reader/writer: round trip, metadata, and every header corruption we refuse.
#include <gtest/gtest.h>

#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>

#include <unistd.h>

#include "omni/core/error.h"
#include "omni/io/mapped_file.h"
#include "omni/io/safetensors.h"
#include "test_paths.h"

using namespace omni;
using namespace omni::io;
namespace fs = std::filesystem;

namespace {

std::string tmp_path(const std::string& name) {
  fs::path dir = fs::temp_directory_path() / ("omni_st_test_" + std::to_string(::getpid()));
  fs::create_directories(dir);
  return (dir / name).string();
}

// Writes an 8-byte length (header.size() unless `claimed` is given), the header, then `data`.
std::string write_raw(const std::string& name, const std::string& header, const std::string& data,
                      long long claimed = -1) {
  const std::string p = tmp_path(name);
  std::ofstream out(p, std::ios::binary);
  uint64_t n = claimed >= 0 ? static_cast<uint64_t>(claimed) : header.size();
  for (int i = 0; i < 8; ++i) out.put(static_cast<char>((n >> (8 * i)) & 0xff));
  out << header << data;
  return p;
}

std::string error_of(const std::string& path) {
  try {
    SafetensorsFile::open(path);
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

void expect_error(const std::string& path, const std::string& fragment) {
  const std::string msg = error_of(path);
  EXPECT_NE(msg.find(path), std::string::npos) << "message should name the file: " << msg;
  EXPECT_NE(msg.find(fragment), std::string::npos) << "expected '" << fragment << "' in: " << msg;
}

}  // namespace

// A checkpoint larger than the machine's memory still maps (it is read a tensor at a time and its
// pages dropped as it goes): a sparse file of RAM + 8 GiB, which takes no disk. A writable private
// map charged against the commit limit was refused here (ENOMEM) for BAGEL-7B-MoT's 29 GB file.
TEST(MappedFile, MapsAFileLargerThanMemory) {
  const long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGESIZE);
  ASSERT_GT(pages, 0);
  const uint64_t size = static_cast<uint64_t>(pages) * static_cast<uint64_t>(page) + (uint64_t{8} << 30);
  const std::string p = tmp_path("larger_than_memory.bin");
  { std::ofstream(p, std::ios::binary).put('x'); }
  fs::resize_file(p, size);
  {
    auto f = MappedFile::open(p);
    EXPECT_EQ(f->size(), size);
    EXPECT_EQ(f->data()[0], 'x');
    EXPECT_EQ(f->data()[size - 1], 0);  // a hole reads as zeros
  }
  fs::remove(p);
}

TEST(Safetensors, WriteReadRoundTrip) {
  const float a[6] = {1, 2, 3, 4, 5, 6};
  const uint16_t b[2] = {0x3f80, 0xc000};  // BF16 1.0, -2.0
  const int64_t c[1] = {-7};
  const std::string p = tmp_path("rt.safetensors");
  write_safetensors(p, {{"layer.a", DType::F32, {2, 3}, a}, {"b", DType::BF16, {2}, b}, {"scalar", DType::I64, {}, c}},
                    {{"format", "pt"}});
  auto f = SafetensorsFile::open(p);
  ASSERT_EQ(f->tensors().size(), 3u);
  EXPECT_EQ(f->tensors()[0].name, "layer.a");  // file order
  EXPECT_EQ(f->info("layer.a").shape, (std::vector<int64_t>{2, 3}));
  EXPECT_EQ(f->info("b").dtype, DType::BF16);
  EXPECT_EQ(f->info("scalar").shape.size(), 0u);
  EXPECT_EQ(f->metadata().at("format"), "pt");
  EXPECT_EQ(0, std::memcmp(f->data("layer.a"), a, sizeof a));
  EXPECT_EQ(0, std::memcmp(f->data("b"), b, sizeof b));
  EXPECT_EQ(0, std::memcmp(f->data("scalar"), c, sizeof c));
  // Header is padded to 8 bytes so the data section is aligned.
  EXPECT_EQ((reinterpret_cast<uintptr_t>(f->data("layer.a")) - reinterpret_cast<uintptr_t>(f->mapping()->data())) % 8, 0u);
  EXPECT_THROW(f->info("nope"), Error);
  EXPECT_FALSE(fs::exists(p + ".tmp"));
}

TEST(Safetensors, ZeroSizedTensorAndEmptyFile) {
  const std::string p = tmp_path("empty_tensor.safetensors");
  write_safetensors(p, {{"e", DType::F32, {0, 4}, nullptr}});
  auto f = SafetensorsFile::open(p);
  EXPECT_EQ(f->info("e").nbytes, 0u);
  const std::string p2 = tmp_path("no_tensors.safetensors");
  write_safetensors(p2, {});
  EXPECT_EQ(SafetensorsFile::open(p2)->tensors().size(), 0u);
}

TEST(Safetensors, ReadsGoldenFixture) {
  auto f = SafetensorsFile::open(std::string(OMNI_FIXTURES) + "/janus_tiny/model.safetensors");
  EXPECT_EQ(f->tensors().size(), 416u);
  EXPECT_EQ(f->info("gen_vision_model.quantize.codebook_used").nbytes, 65536u * 2);
  for (const auto& t : f->tensors()) EXPECT_EQ(t.dtype, DType::BF16) << t.name;
}

TEST(Safetensors, RefusesCorruptHeaders) {
  const std::string ok = R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})";
  const std::string data8(8, '\0');
  expect_error(write_raw("missing.safetensors", "", "", 0) + ".nope", "no such file");
  {
    const std::string p = tmp_path("tiny.safetensors");
    std::ofstream(p) << "abc";
    expect_error(p, "at least an 8-byte header length");
  }
  expect_error(write_raw("lying.safetensors", ok, data8, 1000), "exceeds the file size");
  expect_error(write_raw("huge.safetensors", ok, data8, 1ll << 40), "100 MB limit");
  expect_error(write_raw("badjson.safetensors", "{\"a\": [1,", data8), "not valid JSON");
  expect_error(write_raw("array.safetensors", "[1,2]", ""), "must be a JSON object");
  expect_error(write_raw("nooffs.safetensors", R"({"a":{"dtype":"F32","shape":[2]}})", data8),
               "expected an object with dtype, shape and data_offsets");
  expect_error(write_raw("dtype.safetensors", R"({"a":{"dtype":"F8","shape":[2],"data_offsets":[0,8]}})", data8),
               "unsupported dtype 'F8'");
  expect_error(write_raw("size.safetensors", R"({"a":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}})", data8),
               "needs 12 bytes but data_offsets span 8");
  expect_error(write_raw("beyond.safetensors", R"({"a":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}})", data8),
               "outside the 8-byte data section");
  expect_error(write_raw("backwards.safetensors", R"({"a":{"dtype":"F32","shape":[0],"data_offsets":[8,0]}})", data8),
               "run backwards");
  expect_error(write_raw("negshape.safetensors", R"({"a":{"dtype":"F32","shape":[-2],"data_offsets":[0,8]}})", data8),
               "non-negative integers");
  // element counts that overflow int64 (they wrapped to 0 elements, matching empty data)
  expect_error(write_raw("wrap.safetensors", R"({"w":{"dtype":"F32","shape":[4294967296,4294967296,16],"data_offsets":[0,0]}})",
                         ""),
               "more than 2^62 elements");
  expect_error(write_raw("wrap4.safetensors", R"({"w":{"dtype":"F32","shape":[65536,65536,65536,65536],"data_offsets":[0,0]}})",
                         ""),
               "more than 2^62 elements");
  expect_error(write_raw("overlap.safetensors",
                         R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})",
                         data8),
               "overlap");
  expect_error(write_raw("meta.safetensors", R"({"__metadata__":{"x":1}})", ""), "is not a string");
  // A repeated name is ambiguous (a JSON reader keeps one of the two): refused, at any depth.
  expect_error(write_raw("dupname.safetensors",
                         R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}})",
                         data8),
               "names 'a' twice");
  expect_error(write_raw("dupkey.safetensors", R"({"a":{"dtype":"F32","dtype":"F16","shape":[2],"data_offsets":[0,8]}})", data8),
               "names 'dtype' twice");
  // A truncated copy of a real file: the data section no longer holds every tensor.
  {
    std::ifstream in(std::string(OMNI_FIXTURES) + "/janus_tiny/model.safetensors", std::ios::binary);
    std::string all((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    const std::string p = tmp_path("truncated.safetensors");
    std::ofstream(p, std::ios::binary) << all.substr(0, all.size() / 2);
    expect_error(p, "truncated file?");
  }
}
