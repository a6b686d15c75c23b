#include "omni/io/checkpoint_export_torch.h"

#include <map>

#include "omni/core/error.h"
#include "omni/io/dtype_torch.h"
#include "omni/io/module_loader_torch.h"
#include "omni/io/safetensors.h"

namespace omni::io {

void write_updated_safetensors(const Checkpoint& original, const torch::nn::Module& module, const std::string& out_file,
                               const std::function<bool(const std::string&)>& keep_original,
                               const std::function<torch::Tensor(const std::string&)>& source) {
  auto kept = [&](const std::string& name) { return keep_original && keep_original(name); };
  std::map<std::string, torch::Tensor> now;
  std::vector<std::string> module_order;
  for (const auto& p : module.named_parameters())
    if (!kept(p.key())) {
      now.emplace(p.key(), p.value());
      module_order.push_back(p.key());
    }
  for (const auto& b : module.named_buffers())
    if (!kept(b.key())) {
      now.emplace(b.key(), b.value());
      module_order.push_back(b.key());
    }
  // The value of `name`: the source's, else the module's, else the original bytes.
  auto value = [&](const std::string& name) -> torch::Tensor {
    if (now.count(name) && source)
      if (auto t = source(name); t.defined()) return t;
    auto it = now.find(name);
    return it != now.end() ? it->second.detach() : original.get(name);
  };
  // The layout first (the original's names, order, shapes and dtypes; then names only the module
  // has), then each tensor converted and written one at a time.
  std::vector<RawTensor> layout;
  for (const auto& info : original.tensors()) layout.push_back({info.name, info.dtype, info.shape, nullptr});
  for (const auto& name : module_order)
    if (!original.contains(name)) {
      const auto t = value(name);
      layout.push_back({name, from_torch(t.scalar_type()), t.sizes().vec(), nullptr});
    }
  torch::Tensor current;
  write_safetensors_streamed(
      out_file, layout,
      [&](size_t i) -> const void* {
        const auto& l = layout[i];
        // In the original's dtype: a bf16 checkpoint trained in fp32 exports bf16, at its own size.
        current = value(l.name).to(torch::kCPU).to(to_torch(l.dtype)).contiguous();
        if (current.sizes().vec() != l.shape)
          throw Error(out_file, "'" + l.name + "' is " + shape_str(current.sizes().vec()) + ", the original " +
                                    shape_str(l.shape));
        return current.data_ptr();
      },
      {{"format", "pt"}});
}

void write_module_safetensors(const torch::nn::Module& module, const std::string& out_file,
                              torch::ScalarType float_dtype) {
  std::vector<torch::Tensor> stored;  // kept alive until the file is written
  std::vector<RawTensor> tensors;
  for (const auto& [name, t] : named_state(module)) {
    auto v = t.detach().to(torch::kCPU);
    if (v.is_floating_point()) v = v.to(float_dtype);
    stored.push_back(v.contiguous());
    const auto& s = stored.back();
    tensors.push_back({name, from_torch(s.scalar_type()), s.sizes().vec(), s.data_ptr()});
  }
  write_safetensors(out_file, tensors, {{"format", "pt"}});
}

}  // namespace omni::io
