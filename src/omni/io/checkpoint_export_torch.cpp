#include "omni/io/checkpoint_export_torch.h"

#include <map>
#include <set>

#include "omni/io/trace_torch.h"

namespace omni::io {

void write_updated_safetensors(const Checkpoint& original, const torch::nn::Module& module, const std::string& out_file,
                               const std::function<bool(const std::string&)>& keep_original) {
  std::vector<std::pair<std::string, torch::Tensor>> current;
  for (const auto& p : module.named_parameters())
    if (!keep_original || !keep_original(p.key())) current.emplace_back(p.key(), p.value());
  for (const auto& b : module.named_buffers())
    if (!keep_original || !keep_original(b.key())) current.emplace_back(b.key(), b.value());
  std::map<std::string, torch::Tensor> now(current.begin(), current.end());
  std::vector<std::pair<std::string, torch::Tensor>> out;
  std::set<std::string> written;
  for (const auto& info : original.tensors()) {
    auto it = now.find(info.name);
    if (it == now.end()) {
      out.emplace_back(info.name, original.get(info.name));
      continue;
    }
    // In the original's dtype: a bf16 checkpoint trained in fp32 exports bf16, at its own size.
    const auto dtype = original.get(info.name).scalar_type();
    out.emplace_back(info.name, it->second.detach().to(torch::kCPU).to(dtype).contiguous());
    written.insert(info.name);
  }
  for (const auto& [name, t] : current)
    if (!written.count(name)) out.emplace_back(name, t.detach().to(torch::kCPU).contiguous());
  save_safetensors(out_file, out, {{"format", "pt"}});
}

}  // namespace omni::io
