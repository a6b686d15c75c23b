// Parameter groups of a module tree by its top-level children (the checkpoint's top-level
// modules), the unit the trainer reports and freezes by.
#pragma once
#include <torch/nn/module.h>

#include <functional>
#include <string>
#include <vector>

#include "omni/models/model.h"

namespace omni::models {

// One group per child that holds parameters, full checkpoint names; `skip(name)` leaves a
// parameter out (e.g. fixed tables the family never trains).
inline std::vector<ParameterGroup> groups_by_child(torch::nn::Module& root,
                                                   const std::function<bool(const std::string&)>& skip = {}) {
  std::vector<ParameterGroup> groups;
  for (const auto& child : root.named_children()) {
    ParameterGroup g;
    g.name = child.key();
    for (const auto& p : child.value()->named_parameters()) {
      const std::string name = g.name + "." + p.key();
      if (!skip || !skip(name)) g.parameters.emplace_back(name, p.value());
    }
    if (!g.parameters.empty()) groups.push_back(std::move(g));
  }
  return groups;
}

// Trainable::layer_units of a decoder whose `n` layers sit under `prefix`
// ("language_model.model.layers" -> "language_model.model.layers.0", ...).
inline std::vector<std::string> numbered_units(const std::string& prefix, size_t n) {
  std::vector<std::string> units;
  for (size_t i = 0; i < n; ++i) units.push_back(prefix + "." + std::to_string(i));
  return units;
}

}  // namespace omni::models
