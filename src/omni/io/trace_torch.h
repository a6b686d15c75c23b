// Writing torch tensors to safetensors, and the `--trace FILE.safetensors` recorder that every
// pipeline uses to dump named intermediates for layer-by-layer diffs against the official code.
#pragma once
#include <torch/torch.h>

#include <map>
#include <string>
#include <utility>
#include <vector>

namespace omni::io {

// Tensors are written contiguous, on CPU, in their own dtype (must be a checkpoint dtype).
void save_safetensors(const std::string& path, const std::vector<std::pair<std::string, torch::Tensor>>& tensors,
                      const std::map<std::string, std::string>& metadata = {});

// Collects named tensors; a disabled Trace (no path) ignores everything at no cost.
class Trace {
 public:
  Trace() = default;
  explicit Trace(std::string path) : path_(std::move(path)) {}
  bool enabled() const { return !path_.empty(); }
  // Records a detached CPU copy; a second record under the same name replaces the first.
  void record(const std::string& name, const torch::Tensor& t);
  const std::vector<std::pair<std::string, torch::Tensor>>& tensors() const { return tensors_; }
  void set_metadata(const std::string& key, const std::string& value) { metadata_[key] = value; }
  // Writes the file (no-op when disabled).
  void save() const;

 private:
  std::string path_;
  std::vector<std::pair<std::string, torch::Tensor>> tensors_;
  std::map<std::string, std::string> metadata_;
};

// Records into `trace` when it is given and enabled.
inline void record(Trace* trace, const std::string& name, const torch::Tensor& t) {
  if (trace && trace->enabled()) trace->record(name, t);
}

}  // namespace omni::io
