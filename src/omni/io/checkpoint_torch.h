// A checkpoint: one or more weight files seen as one name -> tensor map.
// Opens a file (.safetensors, .bin), a shard index (*.safetensors.index.json,
// pytorch_model.bin.index.json) or a model directory. safetensors tensors are zero-copy views
// into the memory map; conversion to the compute dtype happens on demand.
#pragma once
#include <torch/torch.h>

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "omni/io/dtype.h"

namespace omni::io {

class Checkpoint {
 public:
  // Throws omni::Error naming the path when nothing loadable is found or a file is corrupt.
  static Checkpoint open(const std::string& path);
  // Opens exactly these files (safetensors or .bin); names must be unique across them.
  static Checkpoint open_files(const std::vector<std::string>& files, const std::string& label);

  const std::string& label() const { return label_; }  // what was opened, for messages
  const std::vector<std::string>& files() const { return files_; }
  const std::vector<TensorInfo>& tensors() const { return infos_; }
  bool contains(const std::string& name) const { return where_.count(name) != 0; }
  const TensorInfo& info(const std::string& name) const;
  uint64_t total_bytes() const;

  // The tensor as stored (zero-copy for safetensors; the view keeps the mapping alive).
  torch::Tensor get(const std::string& name) const;
  // Converted to `dtype` (a copy unless already that dtype).
  torch::Tensor get(const std::string& name, torch::ScalarType dtype) const;
  // For a loader that has copied the tensor: drops the whole pages of its mapped bytes from this
  // process's resident set (the OS page cache keeps them; a later get() faults them back in), so
  // loading a checkpoint does not also hold it in RSS. Views of it modified in place lose their
  // changes. No-op for .bin sources.
  void release(const std::string& name) const;

  // The name -> source file map of a model directory, resolved as `open` does.
  static std::vector<std::string> weight_files_in_dir(const std::string& dir);

  struct Source;  // one weight file (implementation detail)

 private:
  std::string label_;
  std::vector<std::string> files_;
  std::vector<TensorInfo> infos_;
  std::map<std::string, size_t> where_;  // name -> index into infos_
  std::vector<std::shared_ptr<Source>> sources_;
  std::vector<size_t> source_of_;  // infos_ index -> sources_ index
};

}  // namespace omni::io
