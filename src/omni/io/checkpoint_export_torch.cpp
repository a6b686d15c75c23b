#include "omni/io/checkpoint_export_torch.h"

#include <map>
#include <set>

#include "omni/io/trace_torch.h"

namespace omni::io {

void write_updated_safetensors(const Checkpoint& original,
                               const std::vector<std::pair<std::string, torch::Tensor>>& current,
                               const std::string& out_file) {
  std::map<std::string, torch::Tensor> now;
  for (const auto& [name, t] : current) now[name] = t;
  std::vector<std::pair<std::string, torch::Tensor>> out;
  std::set<std::string> written;
  for (const auto& info : original.tensors()) {
    auto it = now.find(info.name);
    out.emplace_back(info.name, it != now.end() ? it->second.detach().to(torch::kCPU).contiguous() : original.get(info.name));
    written.insert(info.name);
  }
  for (const auto& [name, t] : current)
    if (!written.count(name)) out.emplace_back(name, t.detach().to(torch::kCPU).contiguous());
  save_safetensors(out_file, out, {{"format", "pt"}});
}

}  // namespace omni::io
