// torch.save `.bin` reader / writer: fixtures from scripts/dev/make_torch_bin_fixtures.py
// (recipe in tests/fixtures/torch_bin/README.md), checkpoints built at test time, and hostile input.
#include <caffe2/serialize/inline_container.h>
#include <gtest/gtest.h>
#include <torch/torch.h>
#include <torch/version.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <random>

#include "omni/core/error.h"
#include "omni/io/pickle_torch.h"
#include "omni/io/checkpoint_torch.h"
#include "omni/io/torch_bin_torch.h"
#include "test_paths.h"

using namespace omni;
using namespace omni::io;
using namespace std::string_literals;
namespace fs = std::filesystem;

namespace {

std::string fx(const std::string& name) { return std::string(OMNI_FIXTURES) + "/torch_bin/" + name; }

// The fixture script's ar(n, T): arange in float64, converted to T.
torch::Tensor ar(int64_t n, torch::ScalarType t = torch::kFloat32) {
  return torch::arange(n, torch::TensorOptions().dtype(torch::kFloat64)).to(t);
}

// tiny.bin's recipe, in file order, with the same storage sharing.
NamedTensors tiny_recipe() {
  torch::Tensor lin_w = (ar(12) * 0.5 - 3).reshape({3, 4});
  torch::Tensor base = ar(10) * 1.5;
  torch::Tensor emb = ((ar(20) - 10) * 0.25).to(torch::kBFloat16).reshape({5, 4});
  return {
      {"half_w", (ar(6) * 0.125).to(torch::kFloat16).reshape({2, 3})},
      {"pos", ar(6, torch::kInt64) * int64_t(1000000000000)},
      {"mask", (ar(6, torch::kInt64) % 2 == 0).reshape({2, 3})},
      {"raw", ar(4, torch::kUInt8) * 60},
      {"scale", torch::tensor(2.5f)},
      {"lin_t", lin_w.t()},
      {"tail", base.slice(0, 4)},
      {"every_other", base.slice(0, 1, 10, 3)},
      {"lin.weight", lin_w},
      {"lin.bias", ar(3) + 100},
      {"emb.weight", emb},
      {"head.weight", emb},
  };
}

NamedTensors plain_recipe() {
  return {
      {"f64", ar(5, torch::kFloat64) / 4},
      {"i32", (ar(6, torch::kInt32) - 3).reshape({2, 3})},
      {"i16", ar(4, torch::kInt16) * -1000},
      {"i8", ar(8, torch::kInt8) - 4},
      {"param", ar(3)},
      {"empty", torch::zeros({0, 3})},
  };
}

// Same dtype, shape and bytes.
::testing::AssertionResult same_bits(const torch::Tensor& a, const torch::Tensor& b) {
  if (a.scalar_type() != b.scalar_type())
    return ::testing::AssertionFailure() << "dtype " << a.scalar_type() << " vs " << b.scalar_type();
  if (a.sizes() != b.sizes()) return ::testing::AssertionFailure() << "shape " << a.sizes() << " vs " << b.sizes();
  torch::Tensor ca = a.contiguous(), cb = b.contiguous();
  if (ca.numel() && std::memcmp(ca.data_ptr(), cb.data_ptr(), ca.numel() * ca.element_size()) != 0)
    return ::testing::AssertionFailure() << "values differ:\n" << a << "\nvs\n" << b;
  return ::testing::AssertionSuccess();
}

void expect_same(const NamedTensors& got, const NamedTensors& want) {
  ASSERT_EQ(got.size(), want.size());
  for (size_t i = 0; i < want.size(); ++i) {
    EXPECT_EQ(got[i].first, want[i].first);
    EXPECT_TRUE(same_bits(got[i].second, want[i].second)) << want[i].first;
  }
}

torch::Tensor find(const NamedTensors& ts, const std::string& name) {
  for (const auto& [n, t] : ts)
    if (n == name) return t;
  ADD_FAILURE() << "no tensor " << name;
  return {};
}

// Runs f, expects an omni::Error whose message contains every `needle`.
template <class F>
void expect_error(F&& f, std::initializer_list<std::string> needles) {
  try {
    f();
    ADD_FAILURE() << "no exception; expected one containing '" << *needles.begin() << "'";
  } catch (const Error& e) {
    for (const auto& n : needles)
      EXPECT_NE(std::string(e.what()).find(n), std::string::npos) << "message: " << e.what() << "\nwanted: " << n;
  } catch (const std::exception& e) {
    ADD_FAILURE() << "not an omni::Error: " << e.what();
  }
}

// A fresh folder under the build tree.
std::string temp_dir(const std::string& name) {
  fs::path d = fs::path(OMNI_BINARY_DIR) / "test_tmp" / "torch_bin" / name;
  fs::remove_all(d);
  fs::create_directories(d);
  return d.string();
}

// ---- hand-made pickles ----
std::string le32(uint32_t v) {
  std::string s(4, '\0');
  for (int k = 0; k < 4; ++k) s[k] = static_cast<char>((v >> (8 * k)) & 0xff);
  return s;
}
std::string U(const std::string& s) { return "X" + le32(static_cast<uint32_t>(s.size())) + s; }
std::string I(int v) { return std::string("K") + static_cast<char>(v); }  // 0 <= v < 256
std::string G(const std::string& module, const std::string& name) { return "c" + module + "\n" + name + "\n"; }
const std::string kProto2 = "\x80\x02";

// One tensor 'w' = _rebuild_tensor_v2(('storage', torch.<storage>, '0', 'cpu', numel), offset,
// sizes, strides, False, {}): `args` replaces everything after the persistent id when given.
std::string tensor_pickle(int numel = 4, const std::string& after_pid = "",
                          const std::string& storage = "FloatStorage") {
  std::string rest = after_pid.empty() ? I(0) + I(2) + I(2) + "\x86" + I(2) + I(1) + "\x86" + "\x89}" : after_pid;
  return kProto2 + G("collections", "OrderedDict") + ")R(" + U("w") + G("torch._utils", "_rebuild_tensor_v2") +
         "((" + U("storage") + G("torch", storage) + U("0") + U("cpu") + I(numel) + "tQ" + rest + "tR" + "u.";
}

torch_pickle::StateDict parse(const std::string& p) {
  return torch_pickle::parse_state_dict(reinterpret_cast<const uint8_t*>(p.data()), p.size(), "test.pkl");
}

// A zip in torch.save's layout with the given records (data.pkl first).
void write_archive(const std::string& path, const std::string& pkl,
                   const std::map<std::string, std::string>& records) {
  caffe2::serialize::PyTorchStreamWriter w(path);
  w.writeRecord("data.pkl", pkl.data(), pkl.size());
  for (const auto& [name, bytes] : records) w.writeRecord(name, bytes.data(), bytes.size());
  w.writeEndOfFile();
}

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

void write_text(const std::string& path, const std::string& text) {
  std::ofstream out(path, std::ios::binary);
  out << text;
}

std::string data_pkl_of(const std::string& path) {
  caffe2::serialize::PyTorchStreamReader r(path);
  auto [ptr, size] = r.getRecord("data.pkl");
  return std::string(static_cast<const char*>(ptr.get()), size);
}

}  // namespace

// ---------------------------------------------------------------- reading Python's files

TEST(TorchBinRead, ListsTinyMetadataInFileOrder) {
  auto infos = list_torch_bin(fx("tiny.bin"));
  NamedTensors want = tiny_recipe();
  ASSERT_EQ(infos.size(), want.size());
  const DType dtypes[] = {DType::F16, DType::I64, DType::BOOL, DType::U8, DType::F32, DType::F32,
                          DType::F32, DType::F32, DType::F32, DType::F32, DType::BF16, DType::BF16};
  for (size_t i = 0; i < want.size(); ++i) {
    EXPECT_EQ(infos[i].name, want[i].first);
    EXPECT_EQ(infos[i].dtype, dtypes[i]) << infos[i].name;
    EXPECT_EQ(infos[i].shape, want[i].second.sizes().vec()) << infos[i].name;
    EXPECT_EQ(infos[i].nbytes, static_cast<uint64_t>(want[i].second.numel() * want[i].second.element_size()));
    EXPECT_EQ(infos[i].file, fx("tiny.bin"));
  }
  EXPECT_TRUE(infos[4].shape.empty());  // the 0-d scale
}

TEST(TorchBinRead, LoadsTinyValuesBitwise) { expect_same(load_torch_bin(fx("tiny.bin")), tiny_recipe()); }

TEST(TorchBinRead, TiedWeightsAndViewsShareOneStorage) {
  NamedTensors ts = load_torch_bin(fx("tiny.bin"));
  torch::Tensor emb = find(ts, "emb.weight"), head = find(ts, "head.weight");
  EXPECT_EQ(emb.data_ptr(), head.data_ptr());

  torch::Tensor w = find(ts, "lin.weight"), wt = find(ts, "lin_t");
  EXPECT_FALSE(wt.is_contiguous());
  EXPECT_EQ(wt.strides().vec(), (std::vector<int64_t>{1, 4}));
  EXPECT_EQ(wt.storage().data(), w.storage().data());
  EXPECT_TRUE(same_bits(wt, w.t()));

  torch::Tensor tail = find(ts, "tail"), eo = find(ts, "every_other");
  EXPECT_EQ(tail.storage_offset(), 4);
  EXPECT_EQ(eo.storage_offset(), 1);
  EXPECT_EQ(eo.strides().vec(), (std::vector<int64_t>{3}));
  EXPECT_EQ(tail.storage().data(), eo.storage().data());
  EXPECT_EQ(tail.storage().nbytes(), 10u * 4);  // the whole base storage is in the file

  EXPECT_EQ(find(ts, "scale").dim(), 0);
  EXPECT_FALSE(find(ts, "half_w").requires_grad());
}

TEST(TorchBinRead, ReadsPlainDictAndParameter) { expect_same(load_torch_bin(fx("plain_dict.bin")), plain_recipe()); }

TEST(TorchBinRead, ReadsProtocol4) { expect_same(load_torch_bin(fx("proto4.bin")), plain_recipe()); }

TEST(TorchBinRead, FileGetsTensorsLazilyAndSharesStorages) {
  auto f = TorchBinFile::open(fx("tiny.bin"));
  EXPECT_EQ(f->tensors().size(), 12u);
  EXPECT_TRUE(f->contains("tail"));
  EXPECT_FALSE(f->contains("nope"));
  EXPECT_EQ(f->info("pos").dtype, DType::I64);
  torch::Tensor a = f->get("tail"), b = f->get("every_other");
  EXPECT_EQ(a.storage().data(), b.storage().data());
  f->drop_cache();
  torch::Tensor c = f->get("tail");  // read again into a new storage
  EXPECT_NE(c.storage().data(), a.storage().data());
  EXPECT_TRUE(same_bits(a, c));
  expect_error([&] { f->get("nope"); }, {"tiny.bin", "no tensor named 'nope'"});
  expect_error([&] { f->info("nope"); }, {"no tensor named 'nope'"});
}

// ---------------------------------------------------------------- sharded (through Checkpoint)

namespace {
NamedTensors load_via_checkpoint(const std::string& path) {
  auto c = Checkpoint::open(path);
  NamedTensors out;
  for (const auto& info : c.tensors()) out.emplace_back(info.name, c.get(info.name));
  return out;
}
}  // namespace

TEST(TorchBinSharded, LoadsFixtureIndex) {
  const std::string index = fx("pytorch_model.bin.index.json");
  EXPECT_TRUE(is_torch_bin_index(index));
  EXPECT_FALSE(is_torch_bin_index(fx("tiny.bin")));
  EXPECT_FALSE(is_torch_bin_index("model.safetensors.index.json"));
  NamedTensors want = {
      {"model.embed.weight", ar(8).reshape({2, 4})},
      {"model.layers.0.w", (ar(6) / 8).to(torch::kBFloat16).reshape({3, 2})},
      {"model.layers.1.w", (ar(6) - 2).to(torch::kFloat16)},
      {"lm_head.weight", (ar(8) * -1).reshape({4, 2})},
  };
  expect_same(load_via_checkpoint(index), want);
  auto infos = Checkpoint::open(index).tensors();
  ASSERT_EQ(infos.size(), 4u);
  EXPECT_EQ(infos[0].file, fx("pytorch_model-00001-of-00002.bin"));
  EXPECT_EQ(infos[3].file, fx("pytorch_model-00002-of-00002.bin"));
  EXPECT_EQ(infos[1].dtype, DType::BF16);
}

namespace {
// Two shards written by save_torch_bin plus an index, in `dir`.
NamedTensors make_sharded(const std::string& dir) {
  NamedTensors s1 = {{"a.weight", ar(6).reshape({2, 3})}, {"a.bias", ar(2, torch::kBFloat16)}};
  NamedTensors s2 = {{"b.weight", (ar(4) * 3).to(torch::kFloat16)}, {"b.steps", ar(1, torch::kInt64)}};
  save_torch_bin(dir + "/pytorch_model-00001-of-00002.bin", s1);
  save_torch_bin(dir + "/pytorch_model-00002-of-00002.bin", s2);
  write_text(dir + "/pytorch_model.bin.index.json", R"({
  "metadata": {"total_size": 46},
  "weight_map": {
    "a.bias": "pytorch_model-00001-of-00002.bin",
    "a.weight": "pytorch_model-00001-of-00002.bin",
    "b.steps": "pytorch_model-00002-of-00002.bin",
    "b.weight": "pytorch_model-00002-of-00002.bin"
  }
})");
  NamedTensors all = s1;
  all.insert(all.end(), s2.begin(), s2.end());
  return all;
}
}  // namespace

TEST(TorchBinSharded, BuildsAndLoadsTwoShardsAtTestTime) {
  const std::string dir = temp_dir("sharded");
  NamedTensors want = make_sharded(dir);
  expect_same(load_via_checkpoint(dir + "/pytorch_model.bin.index.json"), want);
  expect_same(load_via_checkpoint(dir), want);  // the directory resolves to its index
}

TEST(TorchBinSharded, IndexNamingAMissingShard) {
  const std::string dir = temp_dir("missing_shard");
  make_sharded(dir);
  fs::remove(dir + "/pytorch_model-00002-of-00002.bin");
  expect_error([&] { load_via_checkpoint(dir + "/pytorch_model.bin.index.json"); },
               {"pytorch_model.bin.index.json", "shard 'pytorch_model-00002-of-00002.bin' is missing"});
}

TEST(TorchBinSharded, IndexMappingATensorItsShardLacks) {
  const std::string dir = temp_dir("lacking");
  make_sharded(dir);
  write_text(dir + "/pytorch_model.bin.index.json", R"({"weight_map": {
    "a.bias": "pytorch_model-00001-of-00002.bin", "a.weight": "pytorch_model-00001-of-00002.bin",
    "b.steps": "pytorch_model-00002-of-00002.bin", "b.weight": "pytorch_model-00002-of-00002.bin",
    "c.ghost": "pytorch_model-00002-of-00002.bin"}})");
  expect_error([&] { load_via_checkpoint(dir + "/pytorch_model.bin.index.json"); },
               {"lists tensor 'c.ghost' in shard 'pytorch_model-00002-of-00002.bin', which does not contain it"});
}

TEST(TorchBinSharded, ShardHoldingUnlistedOrMisplacedTensor) {
  const std::string dir = temp_dir("unlisted");
  make_sharded(dir);
  const std::string index = dir + "/pytorch_model.bin.index.json";
  write_text(index, R"({"weight_map": {
    "a.bias": "pytorch_model-00001-of-00002.bin", "a.weight": "pytorch_model-00001-of-00002.bin",
    "b.weight": "pytorch_model-00002-of-00002.bin"}})");
  expect_error([&] { load_via_checkpoint(index); },
               {"shard 'pytorch_model-00002-of-00002.bin' holds tensor 'b.steps' that the index does not list"});
  write_text(index, R"({"weight_map": {
    "a.bias": "pytorch_model-00002-of-00002.bin", "a.weight": "pytorch_model-00001-of-00002.bin",
    "b.steps": "pytorch_model-00002-of-00002.bin", "b.weight": "pytorch_model-00002-of-00002.bin"}})");
  expect_error([&] { load_via_checkpoint(index); }, {"lists tensor 'a.bias' in shard 'pytorch_model-00002-of-00002.bin' but it is in 'pytorch_model-00001-of-00002.bin'"});
}

TEST(TorchBinSharded, BadIndexFiles) {
  const std::string dir = temp_dir("bad_index");
  make_sharded(dir);
  const std::string index = dir + "/x.bin.index.json";
  expect_error([&] { load_via_checkpoint(index); }, {"x.bin.index.json", "no such file"});
  write_text(index, "{not json");
  expect_error([&] { load_via_checkpoint(index); }, {"invalid JSON"});
  write_text(index, R"({"metadata": {}})");
  expect_error([&] { load_via_checkpoint(index); }, {"\"weight_map\""});
  write_text(index, R"({"weight_map": {"a": 3}})");
  expect_error([&] { load_via_checkpoint(index); }, {"weight_map entry 'a' is not a file name"});
  write_text(index, R"({"weight_map": {"a": "../pytorch_model-00001-of-00002.bin"}})");
  expect_error([&] { load_via_checkpoint(index); }, {"expected a file name beside the index"});
  write_text(index, R"({"weight_map": {"a": "/etc/passwd"}})");
  expect_error([&] { load_via_checkpoint(index); }, {"expected a file name beside the index"});
}

// ---------------------------------------------------------------- writer

TEST(TorchBinWriter, RoundTripIsBitwise) {
  const std::string dir = temp_dir("roundtrip");
  NamedTensors ts = tiny_recipe();
  NamedTensors plain = plain_recipe();
  ts.insert(ts.end(), plain.begin(), plain.end());
  ts.push_back({"big_offset", ar(70000, torch::kInt32).slice(0, 66000)});     // BININT offsets
  ts.push_back({"huge_int", torch::full({1}, int64_t(1) << 40, torch::kInt64)});
  ts.push_back({"expanded", ar(3).unsqueeze(0).expand({4, 3})});                 // stride 0
  ts.push_back({"five_d", ar(32).reshape({2, 2, 2, 2, 2}).permute({4, 3, 2, 1, 0})});
  const std::string path = dir + "/roundtrip.bin";
  save_torch_bin(path, ts);
  EXPECT_FALSE(fs::exists(path + ".tmp"));

  NamedTensors got = load_torch_bin(path);
  expect_same(got, ts);
  for (size_t i = 0; i < ts.size(); ++i) {
    EXPECT_EQ(got[i].second.strides(), ts[i].second.strides()) << ts[i].first;
    EXPECT_EQ(got[i].second.storage_offset(), ts[i].second.storage_offset()) << ts[i].first;
  }
  EXPECT_EQ(find(got, "emb.weight").data_ptr(), find(got, "head.weight").data_ptr());
  EXPECT_EQ(find(got, "lin_t").storage().data(), find(got, "lin.weight").storage().data());
  EXPECT_EQ(find(got, "tail").storage().data(), find(got, "every_other").storage().data());

  // The archive looks like torch's: data.pkl, one data/<k> per storage, version "3"; libtorch 2.x's
  // zip writer adds a `byteorder` ("little") and a `.data/serialization_id` record of its own.
  caffe2::serialize::PyTorchStreamReader r(path);
  auto records = r.getAllRecords();
  std::sort(records.begin(), records.end());
  EXPECT_TRUE(r.hasRecord("data.pkl"));
  EXPECT_TRUE(r.hasRecord("version"));
  EXPECT_TRUE(r.hasRecord("data/0"));
  const size_t writer_records = r.hasRecord("byteorder") + r.hasRecord(".data/serialization_id");
#if TORCH_VERSION_MAJOR < 2
  EXPECT_EQ(writer_records, 0u);
#endif
  auto [vptr, vsize] = r.getRecord("version");
  EXPECT_EQ(std::string(static_cast<const char*>(vptr.get()), vsize), "3\n");
  // 12 + 6 + 4 tensors, sharing 3 storages among the tiny ones: 9 + 6 + 4 storages.
  EXPECT_EQ(records.size(), 2u + 9 + 6 + 4 + writer_records);
}

TEST(TorchBinWriter, WritesRecipeForPython) {
  // Checked with Python by: make_torch_bin_fixtures.py --check-written <this file> (see README).
  fs::path dir = fs::path(OMNI_BINARY_DIR) / "torch_bin_written";
  fs::create_directories(dir);
  NamedTensors ts = tiny_recipe();
  NamedTensors plain = plain_recipe();
  ts.insert(ts.end(), plain.begin(), plain.end());
  save_torch_bin((dir / "recipe.bin").string(), ts);
  expect_same(load_torch_bin((dir / "recipe.bin").string()), ts);
}

TEST(TorchBinWriter, RejectsBadInput) {
  const std::string dir = temp_dir("writer_errors");
  const std::string path = dir + "/bad.bin";
  expect_error([&] { save_torch_bin(path, {{"a", ar(2)}, {"a", ar(3)}}); }, {"bad.bin", "'a' appears twice"});
  expect_error([&] { save_torch_bin(path, {{"c", torch::zeros({2}, torch::kComplexFloat)}}); },
               {"tensor 'c' has dtype"});
  expect_error([&] { save_torch_bin(path, {{"u", torch::Tensor()}}); }, {"'u' is undefined"});
  torch::Tensor f = ar(4);
  expect_error([&] { save_torch_bin(path, {{"f", f}, {"g", f.view(torch::kInt32)}}); },
               {"'f' and 'g' share a storage but have different dtypes"});
  expect_error([&] { save_torch_bin(dir + "/no/such/dir/x.bin", {{"a", ar(2)}}); }, {"cannot open"});
  EXPECT_FALSE(fs::exists(path));
  EXPECT_FALSE(fs::exists(path + ".tmp"));
  save_torch_bin(dir + "/none.bin", {});  // an empty state dict is fine
  EXPECT_TRUE(load_torch_bin(dir + "/none.bin").empty());
}

// ---------------------------------------------------------------- errors

TEST(TorchBinErrors, MissingFile) {
  expect_error([&] { load_torch_bin(fx("nope.bin")); }, {"nope.bin", "no such file"});
  expect_error([&] { list_torch_bin(fx("")); }, {"is a directory"});
}

TEST(TorchBinErrors, TruncatedZip) {
  expect_error([&] { load_torch_bin(fx("truncated.bin")); },
               {"truncated.bin", "not a readable torch.save zip archive (truncated or corrupt?)"});
}

TEST(TorchBinErrors, NotAZip) {
  expect_error([&] { list_torch_bin(fx("not_a_zip.bin")); }, {"not_a_zip.bin", "no zip signature"});
  expect_error([&] { list_torch_bin(fx("README.md")); }, {"no zip signature"});
  const std::string dir = temp_dir("empty");
  write_text(dir + "/empty.bin", "");
  expect_error([&] { list_torch_bin(dir + "/empty.bin"); }, {"empty file"});
}

TEST(TorchBinErrors, LegacyFormat) {
  expect_error([&] { load_torch_bin(fx("legacy.bin")); }, {"legacy.bin", "legacy (torch < 1.6"});
}

TEST(TorchBinErrors, MaliciousFixtureNamesTheGlobal) {
  try {
    load_torch_bin(fx("malicious.bin"));
    FAIL() << "no exception";
  } catch (const Error& e) {
    EXPECT_EQ(e.subject(), fx("malicious.bin") + ": pickle");
    EXPECT_EQ(e.reason(), "global 'os.system' is not allowed in a checkpoint");
  }
  expect_error([&] { list_torch_bin(fx("malicious.bin")); }, {"global 'os.system' is not allowed"});
}

TEST(TorchBinErrors, DisallowedGlobals) {
  for (auto [module, name] : std::vector<std::pair<std::string, std::string>>{
           {"builtins", "eval"}, {"__builtin__", "getattr"}, {"posix", "system"}, {"subprocess", "Popen"},
           {"torch", "UntypedStorage"}, {"torch.storage", "_load_from_bytes"}, {"torch._utils", "_rebuild_qtensor"},
           {"torch", "ComplexFloatStorage"}, {"collections", "namedtuple"}}) {
    std::string p = kProto2 + G(module, name) + U("x") + "\x85R.";
    expect_error([&] { parse(p); }, {"test.pkl", "global '" + module + "." + name + "'",
                                     "is not allowed in a checkpoint"});
  }
  // STACK_GLOBAL (protocol 4) goes through the same allow-list.
  expect_error([&] { parse("\x80\x04" + U("os") + U("system") + "\x93" + U("ls") + "\x85R."); },
               {"global 'os.system' is not allowed"});
  // Inside a storage persistent id.
  expect_error([&] { parse(tensor_pickle(4, "", "UntypedStorage")); }, {"global 'torch.UntypedStorage'"});
  // And inside a real zip.
  const std::string dir = temp_dir("evil");
  write_archive(dir + "/evil.bin", kProto2 + G("builtins", "exec") + U("print(1)") + "\x85R.", {});
  expect_error([&] { load_torch_bin(dir + "/evil.bin"); }, {"evil.bin: pickle", "global 'builtins.exec'"});
}

TEST(TorchBinErrors, MalformedPickles) {
  // The helper itself yields a valid one.
  auto sd = parse(tensor_pickle());
  ASSERT_EQ(sd.tensors.size(), 1u);
  EXPECT_EQ(sd.tensors[0].second.sizes, (std::vector<int64_t>{2, 2}));

  const std::vector<std::pair<std::string, std::string>> cases = {
      {kProto2 + "\xff", "unsupported pickle opcode 0xff"},
      {kProto2 + "N" + "i", "unsupported pickle opcode 0x69 ('i')"},  // INST: never supported
      {kProto2 + "R.", "REDUCE: stack underflow"},
      {kProto2 + "(R.", "REDUCE: stack underflow"},  // no popping across a MARK
      {kProto2 + "}", "the stream ends before STOP"},
      {"", "the stream ends before STOP"},
      {kProto2 + "X\xff\xff\xff\x7f" "abc", "truncated: needs 2147483647 more bytes"},
      {kProto2 + "c" "collections", "truncated inside a GLOBAL name"},
      {kProto2 + "h\x07.", "memo index 7 is not defined"},
      {kProto2 + "j\x00\x00\x01\x00."s, "memo index 65536 is not defined"},
      {kProto2 + "}t.", "TUPLE: no MARK on the stack"},
      {kProto2 + "\x80\x07", "unsupported pickle protocol 7"},
      {kProto2 + "\x8a\x09" + std::string(9, '\x01') + ".", "integer wider than 64 bits"},
      {kProto2 + "]}b.", "BUILD on a list"},
      {kProto2 + "]" + U("k") + I(1) + "s.", "SETITEM on a list"},
      {kProto2 + "}Na.", "APPEND to a dict"},
      {kProto2 + "N.", "the pickled object is a None, not a state dict"},
      {kProto2 + "}" + U("k") + I(3) + "s.", "entry 'k' is a int, not a tensor"},
      {kProto2 + "}" + U("k") + "}s.", "training checkpoint?"},
      {kProto2 + "}" + I(1) + I(3) + "s.", "state dict key is a int, not a str"},
      {kProto2 + I(1) + ")R.", "REDUCE: callable is a int"},
      {kProto2 + G("collections", "OrderedDict") + I(1) + "\x85R.", "OrderedDict called with arguments"},
      {kProto2 + G("torch", "FloatStorage") + ")R.", "may only appear inside a storage persistent id"},
      {kProto2 + U("x") + "Q.", "persistent id is not a 5-tuple"},
      {kProto2 + "(" + U("storage") + I(1) + U("0") + U("cpu") + I(1) + "tQ.", "names no typed storage class"},
      // Wrong arguments to _rebuild_tensor_v2.
      {tensor_pickle(4, U("0") + I(2) + "\x85" + I(1) + "\x85" + "\x89}"), "storage offset is not a non-negative int"},
      {tensor_pickle(4, I(0) + I(2) + "\x85" + I(1) + I(1) + "\x86" + "\x89}"), "size has 1 dims but stride has 2"},
      {tensor_pickle(4, I(0) + U("2") + I(1) + "\x85" + "\x89}"), "size is a str, not a tuple"},
      {tensor_pickle(4, I(0) + I(2) + "\x85" + I(1) + "\x85" + "N}"), "requires_grad is not a bool"},
      {tensor_pickle(4, I(0) + I(2) + "\x85" + I(1) + "\x85" + "\x89" + I(3)), "backward_hooks is not a dict"},
      {tensor_pickle(4, I(0) + I(2) + "\x85" + I(1) + "\x85"), "takes 6 or 7 arguments, got 4"},
      {tensor_pickle(4, I(0) + "J\xff\xff\xff\xff\x85" + I(1) + "\x85" + "\x89}"), "size holds a negative int"},
      // Views that do not fit their storage.
      {tensor_pickle(3), "runs past the end of storage '0' (3 elements)"},
      {tensor_pickle(4, I(1) + I(2) + I(2) + "\x86" + I(2) + I(1) + "\x86" + "\x89}"), "runs past the end"},
      {tensor_pickle(4, I(0) + I(2) + I(2) + "\x86" + I(3) + I(1) + "\x86" + "\x89}"), "runs past the end"},
      {tensor_pickle(4, I(5) + I(0) + "\x85" + I(1) + "\x85" + "\x89}"), "runs past the end"},
      {tensor_pickle(4, I(0) + "\x8a\x08" + std::string("\xff\xff\xff\xff\xff\xff\xff\x3f", 8) + I(4) + "\x86" +
                            I(1) + I(0) + "\x86" + "\x89}"),
       "overflow"},
  };
  for (const auto& [p, want] : cases) expect_error([&] { parse(p); }, {"test.pkl", want});

  // A storage key declared with two different types.
  std::string twice = kProto2 + "}(" + U("a") + G("torch._utils", "_rebuild_tensor_v2") + "((" + U("storage") +
                      G("torch", "FloatStorage") + U("0") + U("cpu") + I(4) + "tQ" + I(0) + ")" + ")" + "\x89}tR" +
                      U("b") + G("torch._utils", "_rebuild_tensor_v2") + "((" + U("storage") +
                      G("torch", "LongStorage") + U("0") + U("cpu") + I(4) + "tQ" + I(0) + ")" + ")" + "\x89}tR" +
                      "u.";
  expect_error([&] { parse(twice); }, {"storage '0' is declared twice"});
}

TEST(TorchBinErrors, MissingOrShortStorageRecord) {
  const std::string dir = temp_dir("records");
  write_archive(dir + "/nodata.bin", tensor_pickle(), {});
  expect_error([&] { list_torch_bin(dir + "/nodata.bin"); },
               {"nodata.bin", "tensor 'w' uses storage record 'data/0', which is missing"});
  write_archive(dir + "/short.bin", tensor_pickle(), {{"data/0", std::string(12, '\0')}});
  EXPECT_EQ(list_torch_bin(dir + "/short.bin").size(), 1u);  // metadata needs no storage
  expect_error([&] { load_torch_bin(dir + "/short.bin"); },
               {"short.bin", "storage record 'data/0' holds 12 bytes but the pickle declares 4 F32 elements"});
  write_archive(dir + "/ok.bin", tensor_pickle(), {{"data/0", std::string(16, '\0')}});
  EXPECT_TRUE(same_bits(load_torch_bin(dir + "/ok.bin").at(0).second, torch::zeros({2, 2})));
  // A zip without data.pkl.
  {
    caffe2::serialize::PyTorchStreamWriter w(dir + "/nopkl.bin");
    w.writeRecord("other.txt", "x", 1);
    w.writeEndOfFile();
  }
  expect_error([&] { list_torch_bin(dir + "/nopkl.bin"); }, {"without a data.pkl record"});
  {
    caffe2::serialize::PyTorchStreamWriter w(dir + "/script.bin");
    w.writeRecord("constants.pkl", "x", 1);
    w.writeRecord("data.pkl.no", "x", 1);
    w.writeEndOfFile();
  }
  expect_error([&] { list_torch_bin(dir + "/script.bin"); }, {"TorchScript archive"});
  // A big-endian byteorder record.
  write_archive(dir + "/big.bin", tensor_pickle(), {{"data/0", std::string(16, '\0')}, {"byteorder", "big"}});
  expect_error([&] { list_torch_bin(dir + "/big.bin"); }, {"only little-endian"});
  write_archive(dir + "/little.bin", tensor_pickle(), {{"data/0", std::string(16, '\0')}, {"byteorder", "little"}});
  EXPECT_EQ(load_torch_bin(dir + "/little.bin").size(), 1u);
}

TEST(TorchBinErrors, TruncatedAndMutatedPicklesNeverCrash) {
  // Every prefix of a real data.pkl, and many random byte mutations, either parse or throw
  // omni::Error; nothing else escapes.
  for (const char* file : {"tiny.bin", "proto4.bin"}) {
    const std::string pkl = data_pkl_of(fx(file));
    ASSERT_NO_THROW(parse(pkl));
    for (size_t n = 0; n < pkl.size(); ++n) EXPECT_THROW(parse(pkl.substr(0, n)), Error) << file << " prefix " << n;
    std::mt19937 rng(1234);
    int parsed = 0;
    for (int round = 0; round < 3000; ++round) {
      std::string m = pkl;
      int edits = 1 + static_cast<int>(rng() % 4);
      for (int k = 0; k < edits; ++k) m[rng() % m.size()] = static_cast<char>(rng() & 0xff);
      try {
        parse(m);
        ++parsed;
      } catch (const Error&) {
      } catch (const std::exception& e) {
        ADD_FAILURE() << "round " << round << ": not an omni::Error: " << e.what();
      }
    }
    EXPECT_LT(parsed, 3000);
  }
}

TEST(TorchBinErrors, DeepNestingIsReleasedWithoutRecursion) {
  // 200k nested 1-tuples, then a list that holds itself: destroying either must not recurse.
  std::string p = kProto2 + "N" + std::string(200000, '\x85') + "]q\x00h\x00" "a0}."s;
  EXPECT_EQ(parse(p).tensors.size(), 0u);
}
