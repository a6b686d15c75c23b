#include "omni/io/trace_torch.h"

#include "omni/io/dtype_torch.h"
#include "omni/io/safetensors.h"

namespace omni::io {

void save_safetensors(const std::string& path, const std::vector<std::pair<std::string, torch::Tensor>>& tensors,
                      const std::map<std::string, std::string>& metadata) {
  std::vector<torch::Tensor> keep;
  std::vector<RawTensor> raw;
  keep.reserve(tensors.size());
  for (const auto& [name, t] : tensors) {
    keep.push_back(t.detach().to(torch::kCPU).contiguous());
    raw.push_back({name, from_torch(t.scalar_type()), t.sizes().vec(), keep.back().data_ptr()});
  }
  write_safetensors(path, raw, metadata);
}

void Trace::record(const std::string& name, const torch::Tensor& t) {
  if (!enabled()) return;
  auto copy = t.detach().to(torch::kCPU).clone();
  for (auto& [n, existing] : tensors_) {
    if (n == name) {
      existing = copy;
      return;
    }
  }
  tensors_.emplace_back(name, copy);
}

void Trace::save() const {
  if (enabled()) save_safetensors(path_, tensors_, metadata_);
}

}  // namespace omni::io
