// Shared helpers for the BAGEL alignment tests on tests/fixtures/bagel_tiny.
#pragma once
#include <torch/torch.h>

#include <string>

#include "omni/io/checkpoint_torch.h"
#include "test_paths.h"

namespace omni::testing {

inline std::string bagel_dir() { return std::string(OMNI_FIXTURES) + "/bagel_tiny"; }

// One fixture file; f("name") is a private copy of the tensor.
struct BagelFixture {
  io::Checkpoint ck;
  explicit BagelFixture(const std::string& file) : ck(io::Checkpoint::open(bagel_dir() + "/" + file)) {}
  torch::Tensor operator()(const std::string& n) const { return ck.get(n).clone(); }
};

}  // namespace omni::testing
