#include "omni/models/registry.h"

#include <algorithm>
#include <filesystem>

#include "omni/core/error.h"
#include "omni/io/hf_config.h"

namespace omni::models {
namespace {
std::vector<ModelEntry>& entries() {
  static std::vector<ModelEntry> e;
  return e;
}
std::string known_types() {
  std::string s;
  for (const auto& e : entries()) {
    s += (s.empty() ? "" : ", ") + e.model_type;
    for (const auto& a : e.aliases) s += ", " + a;
  }
  return s.empty() ? "none registered" : s;
}
}  // namespace

void register_model(ModelEntry entry) {
  for (const auto& e : entries())
    if (e.model_type == entry.model_type) return;  // idempotent
  entries().push_back(std::move(entry));
}

const std::vector<ModelEntry>& registered_models() { return entries(); }

const ModelEntry& find_model(const std::string& model_type) {
  for (const auto& e : entries()) {
    if (e.model_type == model_type) return e;
    if (std::find(e.aliases.begin(), e.aliases.end(), model_type) != e.aliases.end()) return e;
  }
  throw Error("model type '" + model_type + "'", "unknown (known: " + known_types() + ")");
}

const ModelEntry& detect_model(const std::string& dir) {
  namespace fs = std::filesystem;
  if (!fs::is_directory(dir)) throw Error(dir, "model directory not found");
  const fs::path cfg = fs::path(dir) / "config.json";
  std::string type;
  if (fs::is_regular_file(cfg)) {
    auto c = io::HfConfig::from_file(cfg.string());
    type = c.get_or<std::string>("model_type", "");
  }
  for (const auto& e : entries())
    if (e.detect && e.detect(dir)) return e;
  if (!type.empty()) return find_model(type);
  throw Error(dir, "cannot tell the model type (no config.json model_type and no known layout); pass --model_type (known: " +
                       known_types() + ")");
}

}  // namespace omni::models
