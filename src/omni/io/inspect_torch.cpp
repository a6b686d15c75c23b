#include "omni/io/inspect_torch.h"

#include <filesystem>
#include <sstream>

#include "omni/core/error.h"
#include "omni/core/progress.h"
#include "omni/io/checkpoint_torch.h"
#include "omni/io/hf_config.h"
#include "omni/io/shard_index.h"

namespace fs = std::filesystem;

namespace omni::io {
namespace {

// Config keys worth showing in a summary, wherever they appear.
const char* kSummaryKeys[] = {"model_type", "architectures", "hidden_size", "num_hidden_layers",
                              "num_attention_heads", "num_key_value_heads", "intermediate_size",
                              "vocab_size", "max_position_embeddings", "rope_theta", "torch_dtype",
                              "image_size", "patch_size", "cls", "model_name", "layers", "width",
                              "heads", "ch", "ch_mult", "z_channels", "codebook_size", "codebook_embed_dim",
                              "n_embed", "depth", "latent_patch_size", "max_latent_size"};

nlohmann::ordered_json summarise_config(const nlohmann::json& j, int depth) {
  nlohmann::ordered_json out = nlohmann::ordered_json::object();
  if (!j.is_object()) return out;
  for (const char* k : kSummaryKeys)
    if (j.contains(k) && !j[k].is_object()) out[k] = j[k];
  if (depth < 3) {
    for (auto it = j.begin(); it != j.end(); ++it) {
      if (!it.value().is_object() || it.value().empty()) continue;
      auto sub = summarise_config(it.value(), depth + 1);
      if (!sub.empty()) out[it.key()] = sub;
    }
  }
  return out;
}

nlohmann::ordered_json summarise_checkpoint(const Checkpoint& c) {
  nlohmann::ordered_json r;
  r["label"] = c.label();
  nlohmann::ordered_json files = nlohmann::ordered_json::array();
  for (const auto& f : c.files()) files.push_back(f);
  r["files"] = files;
  std::map<std::string, int64_t> dtypes;
  nlohmann::ordered_json modules = nlohmann::ordered_json::object();
  int64_t params = 0;
  for (const auto& t : c.tensors()) {
    const int64_t n = numel_of(t.shape);
    params += n;
    dtypes[dtype_name(t.dtype)] += 1;
    const std::string top = t.name.substr(0, t.name.find('.'));
    modules[top] = modules.value(top, int64_t{0}) + n;
  }
  r["tensors"] = c.tensors().size();
  r["parameters"] = params;
  r["bytes"] = c.total_bytes();
  r["dtypes"] = dtypes;
  r["modules"] = modules;
  return r;
}

std::string human_count(int64_t n) {
  char buf[32];
  if (n >= 1000000000) std::snprintf(buf, sizeof buf, "%.2fB", n / 1e9);
  else if (n >= 1000000) std::snprintf(buf, sizeof buf, "%.2fM", n / 1e6);
  else if (n >= 1000) std::snprintf(buf, sizeof buf, "%.1fK", n / 1e3);
  else std::snprintf(buf, sizeof buf, "%lld", static_cast<long long>(n));
  return buf;
}

}  // namespace

nlohmann::ordered_json inspect_path(const std::string& path) {
  nlohmann::ordered_json r;
  r["path"] = path;
  nlohmann::ordered_json cks = nlohmann::ordered_json::array();
  if (fs::is_directory(path)) {
    const fs::path cfg = fs::path(path) / "config.json";
    if (fs::is_regular_file(cfg)) {
      HfConfig c = HfConfig::from_file(cfg.string());
      if (c.has("model_type")) r["model_type"] = c.json()["model_type"];
      r["config"] = summarise_config(c.json(), 0);
    }
    auto files = Checkpoint::weight_files_in_dir(path);
    if (files.size() == 1 && ends_with(files[0], ".index.json")) {
      cks.push_back(summarise_checkpoint(Checkpoint::open(files[0])));
    } else {
      // Separate weight files (e.g. BAGEL's ema.safetensors + ae.safetensors) are shown one by one.
      for (const auto& f : files) cks.push_back(summarise_checkpoint(Checkpoint::open(f)));
    }
  } else {
    if (ends_with(path, ".json") && !ends_with(path, ".index.json")) {
      HfConfig c = HfConfig::from_file(path);
      if (c.has("model_type")) r["model_type"] = c.json()["model_type"];
      r["config"] = summarise_config(c.json(), 0);
    } else {
      cks.push_back(summarise_checkpoint(Checkpoint::open(path)));
    }
  }
  int64_t tensors = 0, params = 0, bytes = 0;
  for (const auto& c : cks) {
    tensors += c["tensors"].get<int64_t>();
    params += c["parameters"].get<int64_t>();
    bytes += c["bytes"].get<int64_t>();
  }
  r["checkpoints"] = cks;
  r["totals"] = {{"tensors", tensors}, {"parameters", params}, {"bytes", bytes}};
  return r;
}

std::string format_inspect_report(const nlohmann::ordered_json& r) {
  std::ostringstream os;
  os << "path:       " << r["path"].get<std::string>() << "\n";
  if (r.contains("model_type")) os << "model_type: " << r["model_type"].dump() << "\n";
  if (r.contains("config")) {
    os << "config:\n";
    std::function<void(const nlohmann::ordered_json&, int)> show = [&](const nlohmann::ordered_json& j, int ind) {
      for (auto it = j.begin(); it != j.end(); ++it) {
        os << std::string(ind, ' ') << it.key() << ":";
        if (it.value().is_object()) {
          os << "\n";
          show(it.value(), ind + 2);
        } else {
          os << " " << it.value().dump() << "\n";
        }
      }
    };
    show(r["config"], 2);
  }
  for (const auto& c : r["checkpoints"]) {
    os << "checkpoint: " << c["label"].get<std::string>();
    if (c["files"].size() > 1) os << " (" << c["files"].size() << " files)";
    os << "\n  tensors " << c["tensors"].get<int64_t>() << ", parameters "
       << human_count(c["parameters"].get<int64_t>()) << " (" << c["parameters"].get<int64_t>() << "), "
       << format_bytes(c["bytes"].get<uint64_t>()) << "\n  dtypes:";
    for (auto it = c["dtypes"].begin(); it != c["dtypes"].end(); ++it)
      os << " " << it.key() << "×" << it.value().get<int64_t>();
    os << "\n  modules:\n";
    for (auto it = c["modules"].begin(); it != c["modules"].end(); ++it)
      os << "    " << it.key() << ": " << human_count(it.value().get<int64_t>()) << "\n";
  }
  const auto& t = r["totals"];
  if (r["checkpoints"].size() > 1)
    os << "total: tensors " << t["tensors"].get<int64_t>() << ", parameters "
       << human_count(t["parameters"].get<int64_t>()) << ", " << format_bytes(t["bytes"].get<uint64_t>()) << "\n";
  return os.str();
}

}  // namespace omni::io
