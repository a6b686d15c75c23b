// PyTorch `.bin` / `.pt` checkpoints written by Python's `torch.save(state_dict)` (torch >= 1.6):
// a zip archive `<archive>/data.pkl` (a pickled dict of tensors), `<archive>/data/<key>` (one raw
// little-endian record per storage) and `<archive>/version`. The pickle is read by an allow-listed
// interpreter (see pickle_torch.h): nothing in a checkpoint is ever executed, and anything but a
// flat dict / OrderedDict of str -> tensor is refused with omni::Error.
//
// Sharded checkpoints (`pytorch_model.bin.index.json`) are opened through io::Checkpoint, which
// applies the same strict index <-> shard rules as for safetensors (shard_index.h).
//
// This header is torch-free; the tensor-returning API is in torch_bin_torch.h.
#pragma once
#include <string>
#include <vector>

#include "omni/io/dtype.h"

namespace omni::io {

// Metadata only (the pickle is parsed, no storage is read): tensors in file order, with dtype,
// shape, nbytes (numel * element size) and file = path.
std::vector<TensorInfo> list_torch_bin(const std::string& path);

// True for "*.bin.index.json" (the name, not the contents).
bool is_torch_bin_index(const std::string& path);

}  // namespace omni::io
