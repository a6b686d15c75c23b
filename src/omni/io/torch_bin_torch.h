// Tensor side of the torch.save `.bin` reader and writer (format and rules in torch_bin.h).
//
// Loaded tensors are CPU tensors laid out as torch.load would give them: views with the saved
// sizes, strides and storage offset into storages that are read once and shared (tied weights
// keep sharing memory; a transposed tensor stays non-contiguous). Storage locations ("cuda:0")
// are ignored: everything loads on the CPU. requires_grad is parsed and dropped (never set).
#pragma once
#include <torch/torch.h>

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "omni/io/torch_bin.h"

namespace omni::io {

using NamedTensors = std::vector<std::pair<std::string, torch::Tensor>>;

// One opened .bin file: the pickle is parsed on open; a storage is read from the zip the first
// time a tensor that uses it is requested, then cached. Thread-safe.
class TorchBinFile {
 public:
  // Throws omni::Error naming the file: missing, not a zip, truncated/corrupt, TorchScript or
  // legacy (pre-1.6) format, disallowed pickle content, missing storage records.
  static std::shared_ptr<TorchBinFile> open(const std::string& path);
  ~TorchBinFile();

  const std::string& path() const;
  const std::vector<TensorInfo>& tensors() const;  // file order
  bool contains(const std::string& name) const;
  const TensorInfo& info(const std::string& name) const;  // throws naming tensor and file
  torch::Tensor get(const std::string& name) const;       // reads (and caches) its storage
  NamedTensors load_all() const;                          // file order
  void drop_cache() const;  // forget cached storages (tensors handed out stay valid)

  struct Impl;

 private:
  explicit TorchBinFile(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

// The whole state dict, in file order.
NamedTensors load_torch_bin(const std::string& path);

// Writes what Python's torch.save(OrderedDict(tensors)) writes (torch 1.13 layout: archive
// "archive/", records data.pkl, data/<k>, version = "3"). Tensors that share a storage are
// written once and keep sharing (offsets and strides preserved); non-CPU tensors are copied to
// the CPU. Names must be unique; tensors must be dense, strided and of a DType dtype. Writes to
// "<path>.tmp" and renames, so a failed write never leaves a half file. Python's torch.load
// (also weights_only=True) reads the result.
void save_torch_bin(const std::string& path, const NamedTensors& tensors);

}  // namespace omni::io
