// Janus-Pro ships only PyTorch .bin weights: the same tiny model saved as a 2-shard
// pytorch_model.bin checkpoint (torch.save format, BF16) must load into identical weights and
// give the official logits.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <filesystem>
#include <fstream>

#include "alignment_util.h"
#include "janus_test_util.h"
#include "omni/io/checkpoint_torch.h"
#include "omni/io/module_loader_torch.h"
#include "omni/io/torch_bin_torch.h"
#include "omni/models/janus/model.h"

using namespace omni;
using namespace omni::testing;
namespace fs = std::filesystem;

TEST(JanusBin, ShardedTorchBinCheckpointLoadsLikeSafetensors) {
  const fs::path dir = fs::temp_directory_path() / ("omni_janus_bin_" + std::to_string(::getpid()));
  fs::remove_all(dir);
  fs::create_directories(dir);
  for (const char* f : {"config.json", "tokenizer.json", "preprocessor_config.json", "processor_config.json"})
    fs::copy_file(janus_tiny_dir() + "/" + f, dir / f);

  // Split the official tensors over two torch.save shards plus an HF index.
  auto st = io::Checkpoint::open(janus_tiny_dir() + "/model.safetensors");
  io::NamedTensors shard[2];
  std::ofstream index(dir / "pytorch_model.bin.index.json");
  index << "{\"metadata\": {}, \"weight_map\": {";
  const char* names[2] = {"pytorch_model-00001-of-00002.bin", "pytorch_model-00002-of-00002.bin"};
  size_t i = 0;
  for (const auto& info : st.tensors()) {
    const int s = info.name.rfind("language_model.", 0) == 0 ? 0 : 1;
    shard[s].emplace_back(info.name, st.get(info.name).clone());
    index << (i++ ? ", " : "") << "\"" << info.name << "\": \"" << names[s] << "\"";
  }
  index << "}}";
  index.close();
  io::save_torch_bin((dir / names[0]).string(), shard[0]);
  io::save_torch_bin((dir / names[1]).string(), shard[1]);

  auto from_bin = models::janus::JanusModel::load(dir.string());
  auto& from_st = janus_tiny();
  auto a = io::named_state(*from_bin->net());
  auto b = io::named_state(*from_st.net());
  ASSERT_EQ(a.size(), b.size());
  for (size_t k = 0; k < a.size(); ++k) {
    ASSERT_EQ(a[k].first, b[k].first);
    EXPECT_TRUE(torch::equal(a[k].second, b[k].second)) << a[k].first;
  }
  c10::InferenceMode guard;
  auto embeds = janus_fixture("understanding.safetensors", "inputs_embeds");
  auto logits = from_bin->lm_logits(embeds).slice(1, -8);
  expect_close("logits_last8 (.bin weights)", logits, janus_fixture("understanding.safetensors", "logits_last8"), 1e-4, 1e-4);
  fs::remove_all(dir);
}
