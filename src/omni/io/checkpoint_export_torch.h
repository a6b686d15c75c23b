// Writing a trained model back in its checkpoint's own layout: every tensor of the original
// checkpoint, in its order and under its name, with the module's current value where the module
// holds that name and the original bytes otherwise (e.g. heads the inference graph never builds),
// so the file loads in omni and in the official code alike.
#pragma once
#include <torch/torch.h>

#include <functional>
#include <string>
#include <utility>
#include <vector>

#include "omni/io/checkpoint_torch.h"

namespace omni::io {

// The module's parameters and buffers (named as the checkpoint) replace the original's values,
// except names for which `keep_original` is true (e.g. tables the trainer recomputed); a module
// name the original lacks is appended. Values are written in the original tensor's dtype (an
// appended one in its current dtype), one tensor at a time. `source`, when given, supplies the
// value of a module name instead of the module (an undefined tensor: the module's own), e.g. the
// trainer's sharded parameters reassembled one at a time.
void write_updated_safetensors(const Checkpoint& original, const torch::nn::Module& module, const std::string& out_file,
                               const std::function<bool(const std::string&)>& keep_original = {},
                               const std::function<torch::Tensor(const std::string&)>& source = {});

// A module with no checkpoint behind it (omni init): every parameter and buffer, named as the
// checkpoint and in registration order, floating-point ones stored as `float_dtype`.
void write_module_safetensors(const torch::nn::Module& module, const std::string& out_file,
                              torch::ScalarType float_dtype = torch::kFloat32);

}  // namespace omni::io
