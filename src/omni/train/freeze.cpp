#include "omni/train/freeze.h"

#include <map>
#include <set>

#include "omni/core/error.h"

namespace omni::train {
namespace {

bool starts_with(const std::string& s, const std::string& p) { return s.compare(0, p.size(), p) == 0; }

// The numbered child of a layer list a parameter belongs to ("...blocks.12.attn.w" -> 12).
int64_t layer_index(const std::string& name, const std::string& list_prefix) {
  const std::string rest = name.substr(list_prefix.size());
  const auto dot = rest.find('.');
  try {
    return std::stoll(rest.substr(0, dot));
  } catch (...) {
    return -1;
  }
}

}  // namespace

std::vector<GroupCount> apply_freezing(models::Trainable& model, const Config& cfg, const std::string& family) {
  const auto& f = cfg.train.freeze;
  std::map<std::string, std::vector<std::string>> table;
  std::string declared;
  for (const auto& k : model.freeze_keys()) {
    table[k.key] = k.prefixes;
    declared += (declared.empty() ? "" : ", ") + k.key;
  }
  const FreezeConfig defaults;
  struct Setting {
    std::string key;
    bool on, is_default;
  };
  const std::vector<Setting> settings = {
      {"freeze_vit", f.freeze_vit, f.freeze_vit == defaults.freeze_vit},
      {"freeze_vae", f.freeze_vae, f.freeze_vae == defaults.freeze_vae},
      {"freeze_und", f.freeze_und, f.freeze_und == defaults.freeze_und},
      {"freeze_llm", f.freeze_llm, f.freeze_llm == defaults.freeze_llm},
      {"freeze_gen_modules", f.freeze_gen_modules, f.freeze_gen_modules == defaults.freeze_gen_modules},
      {"freeze_mlp", f.freeze_mlp, f.freeze_mlp == defaults.freeze_mlp},
      {"unfreeze_mot_gen", f.unfreeze_mot_gen, f.unfreeze_mot_gen == defaults.unfreeze_mot_gen},
      {"unfreeze_vit_layers", f.unfreeze_vit_layers != 0, f.unfreeze_vit_layers == defaults.unfreeze_vit_layers},
      {"unfreeze_lm_head", f.unfreeze_lm_head, f.unfreeze_lm_head == defaults.unfreeze_lm_head},
  };
  for (const auto& s : settings)
    if (!table.count(s.key) && !s.is_default)  // a value that would change something
      throw Error("train." + s.key, "does not apply to " + family + " (its freezing keys: " + declared + ")");

  auto groups = model.parameter_groups();
  auto for_each_param = [&](const std::function<void(const std::string&, at::Tensor&)>& fn) {
    for (auto& g : groups)
      for (auto& [name, p] : g.parameters) fn(name, p);
  };
  for_each_param([](const std::string&, at::Tensor& p) { p.requires_grad_(true); });
  auto covered = [&](const std::string& key, const std::string& name) {
    auto it = table.find(key);
    if (it == table.end()) return false;
    for (const auto& pre : it->second)
      if (pre[0] == '*' ? name.find(pre.substr(1)) != std::string::npos : starts_with(name, pre)) return true;
    return false;
  };
  // freeze_* first, then the boolean unfreeze_* keys re-enable theirs (unfreeze_vit_layers below).
  for (const bool freezing : {true, false})
    for (const auto& s : settings) {
      if (!s.on || s.key == "unfreeze_vit_layers" || starts_with(s.key, "freeze_") != freezing) continue;
      for_each_param([&](const std::string& name, at::Tensor& p) {
        if (covered(s.key, name)) p.requires_grad_(!freezing);
      });
    }
  if (f.unfreeze_vit_layers != 0 && table.count("unfreeze_vit_layers")) {
    for (const auto& list : table["unfreeze_vit_layers"]) {
      std::set<int64_t> layers;
      for_each_param([&](const std::string& name, at::Tensor&) {
        if (starts_with(name, list) && layer_index(name, list) >= 0) layers.insert(layer_index(name, list));
      });
      const int64_t n = static_cast<int64_t>(layers.size());
      const int64_t from = f.unfreeze_vit_layers < 0 ? std::max<int64_t>(0, n + f.unfreeze_vit_layers)
                                                     : std::min(n, f.unfreeze_vit_layers);  // layers[N:]
      for_each_param([&](const std::string& name, at::Tensor& p) {
        if (starts_with(name, list) && layer_index(name, list) >= from) p.requires_grad_(true);
      });
    }
  }
  std::vector<GroupCount> counts;
  for (auto& g : groups) {
    GroupCount c{g.name};
    for (auto& [name, p] : g.parameters) (p.requires_grad() ? c.trainable : c.frozen) += p.numel();
    counts.push_back(c);
  }
  return counts;
}

}  // namespace omni::train
