#include "omni/models/registry.h"

#include <algorithm>
#include <filesystem>

#include "omni/core/error.h"
#include "omni/io/hf_config.h"

namespace omni::models {
namespace {
std::vector<Family>& entries() {
  static std::vector<Family> e;
  return e;
}
std::string known_types() {
  std::string s;
  for (const auto& e : entries()) {
    s += (s.empty() ? "" : ", ") + e.name;
    for (const auto& a : e.aliases) s += ", " + a;
  }
  return s.empty() ? "none registered" : s;
}
}  // namespace

void register_family(Family f) {
  for (const auto& e : entries())
    if (e.name == f.name) return;  // idempotent
  entries().push_back(std::move(f));
}

const std::vector<Family>& registered_families() { return entries(); }

const Family& find_family(const std::string& model_type) {
  for (const auto& e : entries()) {
    if (e.name == model_type) return e;
    if (std::find(e.aliases.begin(), e.aliases.end(), model_type) != e.aliases.end()) return e;
  }
  throw Error("model type '" + model_type + "'", "unknown (known: " + known_types() + ")");
}

const Family& detect_family(const std::string& dir) {
  namespace fs = std::filesystem;
  if (!fs::is_directory(dir)) throw Error(dir, "model directory not found");
  for (const auto& e : entries())
    if (e.detect && e.detect(dir)) return e;
  const fs::path cfg = fs::path(dir) / "config.json";
  if (fs::is_regular_file(cfg)) {
    const auto type = io::HfConfig::from_file(cfg.string()).get_or<std::string>("model_type", "");
    if (!type.empty()) return find_family(type);
  }
  throw Error(dir, "cannot tell the model type (no config.json model_type and no known layout); pass --model_type (known: " +
                       known_types() + ")");
}

const Family& resolve_family(const std::string& dir, const std::string& model_type) {
  return model_type.empty() ? detect_family(dir) : find_family(model_type);
}

Trainable* as_trainable(Model& m) { return dynamic_cast<Trainable*>(&m); }

TrainLosses Trainable::forward_train_batch(const std::vector<const TrainExample*>& batch, at::Generator& gen) {
  std::vector<at::Tensor> ce, g;
  for (const auto* ex : batch) {
    auto l = forward_train(*ex, gen);
    if (l.ce.defined()) ce.push_back(l.ce);
    if (l.gen.defined()) g.push_back(l.gen);
  }
  TrainLosses out;
  if (!ce.empty()) out.ce = ce.size() == 1 ? ce[0] : at::cat(ce);
  if (!g.empty()) out.gen = g.size() == 1 ? g[0] : at::cat(g);
  return out;
}

// ---- the one place capabilities are checked ----------------------------------------------------
void run_mode(Model& m, const std::string& mode, const Request& r, OutputSink& out) {
  auto missing = [&] { return Error("--mode " + mode, "not supported by " + m.family()); };
  if (mode == "understand") {
    auto* c = dynamic_cast<Understands*>(&m);
    if (!c) throw missing();
    return c->understand(r, out);
  }
  if (mode == "generate") {
    auto* c = dynamic_cast<Generates*>(&m);
    if (!c) throw missing();
    return c->generate(r, out);
  }
  if (mode == "edit") {
    auto* c = dynamic_cast<Edits*>(&m);
    if (!c) throw missing();
    return c->edit(r, out);
  }
  if (mode == "interleave") {
    auto* c = dynamic_cast<Interleaves*>(&m);
    if (!c) throw missing();
    return c->interleave(r, out);
  }
  throw Error("--mode " + mode, "unknown (expected understand, generate, edit or interleave)");
}

}  // namespace omni::models
