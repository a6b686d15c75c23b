// Writing a trained model back in its checkpoint's own layout: every tensor of the original
// checkpoint, in its order and under its name, with the module's current value where the module
// holds that name and the original bytes otherwise (e.g. heads the inference graph never builds),
// so the file loads in omni and in the official code alike.
#pragma once
#include <torch/torch.h>

#include <string>
#include <utility>
#include <vector>

#include "omni/io/checkpoint_torch.h"

namespace omni::io {

// `current`: the module's named tensors (parameters and buffers, checkpoint names). A name in
// `current` that the original lacks is appended. Values are written in their current dtype.
void write_updated_safetensors(const Checkpoint& original,
                               const std::vector<std::pair<std::string, torch::Tensor>>& current,
                               const std::string& out_file);

}  // namespace omni::io
