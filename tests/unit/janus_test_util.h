// Shared set-up for the Janus golden-fixture tests (tests/fixtures/janus_tiny, see its README).
#pragma once
#include <torch/torch.h>

#include <map>
#include <memory>
#include <string>

#include "omni/io/checkpoint_torch.h"
#include "omni/models/janus/model.h"
#include "test_paths.h"

namespace omni::testing {

inline std::string janus_tiny_dir() { return std::string(OMNI_FIXTURES) + "/janus_tiny"; }

// The tiny model, loaded once per test binary (fp32, CPU).
inline models::janus::JanusModel& janus_tiny() {
  static std::unique_ptr<models::janus::JanusModel> m = models::janus::JanusModel::load(janus_tiny_dir());
  return *m;
}

inline torch::Tensor janus_fixture(const std::string& file, const std::string& name) {
  static std::map<std::string, io::Checkpoint> open;
  auto it = open.find(file);
  if (it == open.end()) it = open.emplace(file, io::Checkpoint::open(janus_tiny_dir() + "/" + file)).first;
  return it->second.get(name).clone();
}

}  // namespace omni::testing
