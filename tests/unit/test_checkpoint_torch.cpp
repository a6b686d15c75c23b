// Checkpoint (safetensors files, shards, directories) and strict module loading.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <filesystem>
#include <fstream>

#include "omni/core/error.h"
#include "omni/io/checkpoint_export_torch.h"
#include "omni/io/checkpoint_torch.h"
#include "omni/io/dtype_torch.h"
#include "omni/io/module_loader_torch.h"
#include "omni/io/trace_torch.h"
#include "test_paths.h"

using namespace omni;
using namespace omni::io;
namespace fs = std::filesystem;

namespace {

fs::path fresh_dir(const std::string& name) {
  fs::path d = fs::temp_directory_path() / ("omni_ckpt_" + std::to_string(::getpid())) / name;
  fs::remove_all(d);
  fs::create_directories(d);
  return d;
}

void save(const fs::path& p, const std::vector<std::pair<std::string, torch::Tensor>>& ts) {
  save_safetensors(p.string(), ts);
}

struct Tiny : torch::nn::Module {
  torch::nn::Linear fc{nullptr};
  torch::Tensor scale;
  Tiny() {
    fc = register_module("fc", torch::nn::Linear(3, 2));
    scale = register_buffer("scale", torch::zeros({2}));
  }
};

std::string load_error(Tiny& m, const Checkpoint& c, const LoadOptions& o = {}) {
  try {
    load_module(m, c, o);
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

}  // namespace

TEST(Checkpoint, ZeroCopyViewAndConversion) {
  auto d = fresh_dir("zc");
  auto w = torch::arange(6, torch::kFloat32).reshape({2, 3}).to(torch::kBFloat16);
  save(d / "m.safetensors", {{"w", w}, {"i", torch::tensor({1, 2, 3}, torch::kInt64)}});
  auto c = Checkpoint::open((d / "m.safetensors").string());
  auto v = c.get("w");
  EXPECT_EQ(v.scalar_type(), torch::kBFloat16);
  EXPECT_TRUE(torch::equal(v, w));
  auto f = c.get("w", torch::kFloat32);
  EXPECT_EQ(f.scalar_type(), torch::kFloat32);
  EXPECT_TRUE(torch::equal(f, torch::arange(6, torch::kFloat32).reshape({2, 3})));
  EXPECT_EQ(c.total_bytes(), 6u * 2 + 3u * 8);
  // In-place writes on a view touch only the private copy-on-write mapping.
  v.add_(1);
  EXPECT_TRUE(torch::equal(Checkpoint::open((d / "m.safetensors").string()).get("w"), w));
}

TEST(Checkpoint, ShardedSafetensorsWithIndex) {
  auto d = fresh_dir("shards");
  save(d / "model-00001-of-00002.safetensors", {{"a.weight", torch::ones({4})}, {"b.weight", torch::ones({2, 2})}});
  save(d / "model-00002-of-00002.safetensors", {{"c.weight", torch::full({3}, 2.0)}});
  std::ofstream(d / "model.safetensors.index.json")
      << R"({"metadata":{"total_size":36},"weight_map":{"a.weight":"model-00001-of-00002.safetensors",)"
      << R"("b.weight":"model-00001-of-00002.safetensors","c.weight":"model-00002-of-00002.safetensors"}})";
  auto c = Checkpoint::open(d.string());  // directory -> index
  EXPECT_EQ(c.tensors().size(), 3u);
  EXPECT_EQ(c.files().size(), 2u);
  EXPECT_TRUE(torch::equal(c.get("c.weight"), torch::full({3}, 2.0)));
  EXPECT_EQ(c.info("c.weight").file, (d / "model-00002-of-00002.safetensors").string());

  // The index must agree with the shards, both ways.
  std::ofstream(d / "bad1.index.json")
      << R"({"weight_map":{"a.weight":"model-00002-of-00002.safetensors","b.weight":"model-00001-of-00002.safetensors","c.weight":"model-00002-of-00002.safetensors"}})";
  try {
    Checkpoint::open((d / "bad1.index.json").string());
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("lists tensor 'a.weight' in shard 'model-00002-of-00002.safetensors'"), std::string::npos) << e.what();
  }
  std::ofstream(d / "bad2.index.json") << R"({"weight_map":{"a.weight":"model-00001-of-00002.safetensors","c.weight":"model-00002-of-00002.safetensors"}})";
  try {
    Checkpoint::open((d / "bad2.index.json").string());
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("holds tensor 'b.weight' that the index does not list"), std::string::npos) << e.what();
  }
  std::ofstream(d / "bad3.index.json") << R"({"weight_map":{"a.weight":"model-00009-of-00009.safetensors"}})";
  try {
    Checkpoint::open((d / "bad3.index.json").string());
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("shard 'model-00009-of-00009.safetensors' is missing"), std::string::npos) << e.what();
  }
  std::ofstream(d / "bad4.index.json") << R"({"weight_map": 3})";
  EXPECT_THROW(Checkpoint::open((d / "bad4.index.json").string()), Error);
}

TEST(Checkpoint, DirectoryErrors) {
  auto d = fresh_dir("empty");
  try {
    Checkpoint::open(d.string());
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("no weights found"), std::string::npos);
  }
  EXPECT_THROW(Checkpoint::open((d / "missing.safetensors").string()), Error);
  std::ofstream(d / "weights.txt") << "hello";
  EXPECT_THROW(Checkpoint::open((d / "weights.txt").string()), Error);
  // Two files holding the same name is ambiguous.
  save(d / "a.safetensors", {{"x", torch::ones({1})}});
  save(d / "b.safetensors", {{"x", torch::ones({1})}});
  try {
    Checkpoint::open(d.string());
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("tensor 'x' appears in both"), std::string::npos) << e.what();
  }
}

TEST(ModuleLoader, StrictLoadConvertsAndReports) {
  auto d = fresh_dir("load");
  auto w = torch::randn({2, 3}).to(torch::kBFloat16);
  auto b = torch::randn({2}).to(torch::kBFloat16);
  save(d / "m.safetensors", {{"fc.weight", w}, {"fc.bias", b}, {"scale", torch::full({2}, 3.0)},
                             {"other.x", torch::ones({1})}});
  auto c = Checkpoint::open((d / "m.safetensors").string());
  Tiny m;
  LoadOptions o;
  o.ignore_unused = [](const std::string& n) { return n.rfind("other.", 0) == 0; };
  auto rep = load_module(m, c, o);
  EXPECT_EQ(rep.tensors, 3u);
  EXPECT_EQ(rep.ignored, 1u);
  EXPECT_EQ(rep.bytes_read, 6u * 2 + 2u * 2 + 2u * 4);
  EXPECT_TRUE(torch::equal(m.fc->weight, w.to(torch::kFloat32)));
  EXPECT_TRUE(torch::equal(m.scale, torch::full({2}, 3.0)));
  // Without the ignore rule, the extra tensor is an error naming it and the file.
  std::string msg = load_error(m, c);
  EXPECT_NE(msg.find("unexpected tensor 'other.x'"), std::string::npos) << msg;
  EXPECT_NE(msg.find("m.safetensors"), std::string::npos) << msg;
}

TEST(ModuleLoader, MissingWrongShapeWrongDtype) {
  auto d = fresh_dir("bad");
  Tiny m;
  save(d / "missing.safetensors", {{"fc.weight", torch::ones({2, 3})}, {"scale", torch::ones({2})}});
  std::string msg = load_error(m, Checkpoint::open((d / "missing.safetensors").string()));
  EXPECT_NE(msg.find("missing tensor 'fc.bias'"), std::string::npos) << msg;
  EXPECT_NE(msg.find("[2]"), std::string::npos) << msg;

  save(d / "shape.safetensors", {{"fc.weight", torch::ones({3, 2})}, {"fc.bias", torch::ones({2})}, {"scale", torch::ones({2})}});
  msg = load_error(m, Checkpoint::open((d / "shape.safetensors").string()));
  EXPECT_NE(msg.find("tensor 'fc.weight' has shape [3, 2], the model expects [2, 3]"), std::string::npos) << msg;
  EXPECT_NE(msg.find("shape.safetensors"), std::string::npos) << msg;

  save(d / "dtype.safetensors", {{"fc.weight", torch::ones({2, 3}, torch::kInt64)}, {"fc.bias", torch::ones({2})}, {"scale", torch::ones({2})}});
  msg = load_error(m, Checkpoint::open((d / "dtype.safetensors").string()));
  EXPECT_NE(msg.find("tensor 'fc.weight' is I64 [2, 3], the model expects Float"), std::string::npos) << msg;
}

// fsdp training loads a model a parameter at a time (dist/fsdp.h): inside the scope the load checks
// every tensor but copies none; each is read when its owner asks.
TEST(ModuleLoader, DeferredLoadChecksEverythingAndReadsEachTensorWhenAsked) {
  auto d = fresh_dir("deferred");
  auto w = torch::randn({2, 3}).to(torch::kBFloat16);
  auto b = torch::randn({2});
  save(d / "m.safetensors", {{"fc.weight", w}, {"fc.bias", b}, {"scale", torch::full({2}, 3.0)}});
  auto c = Checkpoint::open((d / "m.safetensors").string());
  Tiny m;
  {
    torch::NoGradGuard ng;
    for (auto& [name, t] : named_state(m)) t.fill_(-7);
  }
  DeferredWeights deferred;
  LoadReport rep;
  {
    DeferWeights scope(deferred);
    rep = load_module(m, c);
  }
  EXPECT_EQ(rep.tensors, 3u);
  EXPECT_EQ(rep.bytes_read, 0u);
  EXPECT_EQ(deferred.pending(), 3u);
  for (auto& [name, t] : named_state(m)) {
    EXPECT_TRUE(deferred.is_pending(t)) << name;
    EXPECT_TRUE(torch::equal(t, torch::full_like(t, -7))) << name << " was written before it was asked for";
  }
  deferred.load(m.fc->weight);
  EXPECT_TRUE(torch::equal(m.fc->weight, w.to(torch::kFloat32)));
  EXPECT_FALSE(deferred.is_pending(m.fc->weight));
  EXPECT_EQ(deferred.pending(), 2u);
  EXPECT_TRUE(torch::equal(m.fc->bias, torch::full({2}, -7.0)));
  {
    torch::NoGradGuard ng;
    m.fc->weight.fill_(5);
  }
  deferred.load(m.fc->weight);  // no longer pending: untouched
  EXPECT_TRUE(torch::equal(m.fc->weight, torch::full({2, 3}, 5.0)));
  {
    torch::NoGradGuard ng;
    m.scale.copy_(torch::full({2}, 9.0));  // the model writes a pending tensor: that write wins
  }
  deferred.load_all();
  EXPECT_EQ(deferred.pending(), 0u);
  EXPECT_TRUE(torch::equal(m.fc->bias, b));
  EXPECT_TRUE(torch::equal(m.scale, torch::full({2}, 9.0)));

  // The checks still run inside the scope, and the scope ends with its block.
  save(d / "missing.safetensors", {{"fc.weight", torch::ones({2, 3})}, {"scale", torch::ones({2})}});
  DeferredWeights other;
  std::string msg;
  {
    DeferWeights scope(other);
    msg = load_error(m, Checkpoint::open((d / "missing.safetensors").string()));
  }
  EXPECT_NE(msg.find("missing tensor 'fc.bias'"), std::string::npos) << msg;
  rep = load_module(m, c);
  EXPECT_EQ(rep.bytes_read, 6u * 2 + 2u * 4 + 2u * 4);
  EXPECT_TRUE(torch::equal(m.fc->weight, w.to(torch::kFloat32)));
}

TEST(ModuleLoader, PrefixSelectsSubtree) {
  auto d = fresh_dir("prefix");
  save(d / "m.safetensors", {{"enc.fc.weight", torch::ones({2, 3})}, {"enc.fc.bias", torch::ones({2})},
                             {"enc.scale", torch::ones({2})}, {"dec.other", torch::ones({5})}});
  Tiny m;
  LoadOptions o;
  o.prefix = "enc.";
  EXPECT_EQ(load_module(m, Checkpoint::open((d / "m.safetensors").string()), o).tensors, 3u);
}

TEST(Checkpoint, GoldenJanusFixtureLoads) {
  auto c = Checkpoint::open(std::string(OMNI_FIXTURES) + "/janus_tiny/model.safetensors");
  EXPECT_EQ(c.tensors().size(), 416u);
  auto e = c.get("language_model.model.embed_tokens.weight", torch::kFloat32);
  EXPECT_EQ(e.sizes().vec(), (std::vector<int64_t>{2048, 64}));
  EXPECT_TRUE(torch::isfinite(e).all().item<bool>());
}

TEST(Trace, RecordsReplacesAndSaves) {
  auto d = fresh_dir("trace");
  Trace off;
  off.record("x", torch::ones({2}));
  EXPECT_TRUE(off.tensors().empty());
  Trace tr((d / "t.safetensors").string());
  auto x = torch::arange(4, torch::kFloat32);
  tr.record("x", x);
  x.add_(10);  // the trace holds a copy, not the live tensor
  tr.record("ids", torch::tensor({3, 1}, torch::kInt64));
  tr.record("x", torch::arange(3, torch::kFloat32).reshape({1, 3}).t());  // replaced; non-contiguous
  tr.save();
  auto c = Checkpoint::open((d / "t.safetensors").string());
  ASSERT_EQ(c.tensors().size(), 2u);
  EXPECT_TRUE(torch::equal(c.get("x"), torch::arange(3, torch::kFloat32).reshape({3, 1})));
  EXPECT_TRUE(torch::equal(c.get("ids"), torch::tensor({3, 1}, torch::kInt64)));
}

// A trained module written back into its checkpoint's layout keeps each tensor's dtype: a bf16
// original exports bf16 (the trained fp32 values rounded), an fp32 one fp32, and a tensor the
// module does not hold keeps its original bytes.
TEST(ExportDtype, TrainedValuesInTheOriginalsDtype) {
  const auto d = fresh_dir("export_dtype");
  Tiny m;
  torch::manual_seed(1);
  save(d / "orig.safetensors", {{"fc.weight", torch::randn({2, 3}).to(torch::kBFloat16)},
                                {"fc.bias", torch::randn({2})},
                                {"scale", torch::zeros({2}, torch::kBFloat16)},
                                {"extra.head", torch::arange(4, torch::kFloat16)}});
  {
    torch::NoGradGuard ng;
    m.fc->weight.copy_(torch::randn({2, 3}));
    m.fc->bias.copy_(torch::randn({2}));
    m.scale.fill_(0.3);
  }
  write_updated_safetensors(Checkpoint::open((d / "orig.safetensors").string()), m, (d / "out.safetensors").string());
  auto out = Checkpoint::open((d / "out.safetensors").string());
  EXPECT_EQ(out.get("fc.weight").scalar_type(), torch::kBFloat16);
  EXPECT_TRUE(torch::equal(out.get("fc.weight"), m.fc->weight.detach().to(torch::kBFloat16)));
  EXPECT_EQ(out.get("fc.bias").scalar_type(), torch::kFloat32);
  EXPECT_TRUE(torch::equal(out.get("fc.bias"), m.fc->bias.detach()));
  EXPECT_EQ(out.get("scale").scalar_type(), torch::kBFloat16);
  EXPECT_TRUE(torch::equal(out.get("extra.head"), torch::arange(4, torch::kFloat16)));
}
