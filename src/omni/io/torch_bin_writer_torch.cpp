// Writer of torch.save-compatible zip checkpoints (see save_torch_bin in torch_bin_torch.h).
#include <caffe2/serialize/inline_container.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <optional>
#include <set>
#include <unordered_map>

#include "omni/core/error.h"
#include "omni/io/pickle_torch.h"
#include "omni/io/torch_bin_torch.h"
#include "omni/io/dtype_torch.h"

namespace fs = std::filesystem;

namespace omni::io {
namespace {

}  // namespace

void save_torch_bin(const std::string& path, const NamedTensors& tensors) {
  // Everything that can fail is checked before the zip writer exists: its destructor finalizes
  // the archive and must not meet a pending error.
  torch_pickle::StateDict sd;
  std::vector<torch::Tensor> storage_bytes;  // one CPU byte tensor per storage (keeps data alive)
  std::vector<std::string> storage_owner;    // first tensor naming each storage, for messages
  std::unordered_map<const c10::StorageImpl*, size_t> storage_of;
  std::set<std::string> names;
  for (const auto& [name, t] : tensors) {
    if (!names.insert(name).second) throw Error(path, "tensor name '" + name + "' appears twice");
    if (!t.defined()) throw Error(path, "tensor '" + name + "' is undefined");
    if (t.layout() != torch::kStrided || t.is_quantized() || t.is_meta() || !t.has_storage())
      throw Error(path, "tensor '" + name + "' is not a dense strided tensor with data");
    auto dt = try_from_torch(t.scalar_type());
    if (!dt)
      throw Error(path, "tensor '" + name + "' has dtype " + std::string(c10::toString(t.scalar_type())) +
                            ", which a checkpoint cannot hold");
    const c10::Storage& st = t.storage();
    const c10::StorageImpl* key = st.unsafeGetStorageImpl();
    auto found = storage_of.find(key);
    size_t idx;
    if (found == storage_of.end()) {
      idx = sd.storages.size();
      const size_t nbytes = st.nbytes();
      if (nbytes % dtype_size(*dt))
        throw Error(path, "tensor '" + name + "': storage size " + std::to_string(nbytes) +
                              " is not a multiple of the element size");
      torch::Tensor bytes =
          torch::empty({0}, torch::TensorOptions().dtype(torch::kUInt8).device(t.device()))
              .set_(st, 0, {static_cast<int64_t>(nbytes)}, {1});
      storage_bytes.push_back(bytes.device().is_cpu() ? bytes : bytes.cpu());
      storage_owner.push_back(name);
      sd.storages.push_back({*dt, std::to_string(idx), "cpu", static_cast<int64_t>(nbytes / dtype_size(*dt))});
      storage_of.emplace(key, idx);
    } else {
      idx = found->second;
      if (sd.storages[idx].dtype != *dt)
        throw Error(path, "tensors '" + storage_owner[idx] + "' and '" + name +
                              "' share a storage but have different dtypes");
    }
    torch_pickle::TensorRef ref;
    ref.storage = idx;
    ref.offset = t.storage_offset();
    ref.sizes = t.sizes().vec();
    ref.strides = t.strides().vec();
    ref.requires_grad = false;
    sd.tensors.emplace_back(name, std::move(ref));
  }
  const std::string pkl = torch_pickle::write_state_dict(sd);

  const std::string tmp = path + ".tmp";
  std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
  if (!out) throw Error(path, "cannot open '" + tmp + "' for writing");
  bool write_failed = false;
  try {
    // The writer callback never reports failure to libtorch (see above); it remembers it.
    caffe2::serialize::PyTorchStreamWriter writer([&](const void* buf, size_t n) -> size_t {
      if (!write_failed && n > 0) {
        out.write(static_cast<const char*>(buf), static_cast<std::streamsize>(n));
        if (!out) write_failed = true;
      }
      return n;
    });
    static const char kEmpty = 0;
    writer.writeRecord("data.pkl", pkl.data(), pkl.size());
    for (size_t i = 0; i < storage_bytes.size(); ++i) {
      const torch::Tensor& b = storage_bytes[i];
      const void* data = b.numel() ? b.data_ptr() : &kEmpty;
      writer.writeRecord("data/" + sd.storages[i].key, data, static_cast<size_t>(b.numel()));
    }
    writer.writeEndOfFile();
  } catch (const c10::Error& e) {
    out.close();
    std::remove(tmp.c_str());
    throw Error(path, std::string("writing the zip archive failed: ") + e.what_without_backtrace());
  }
  out.close();
  if (write_failed || !out) {
    std::remove(tmp.c_str());
    throw Error(path, "write failed (disk full?)");
  }
  std::error_code ec;
  fs::rename(tmp, path, ec);
  if (ec) {
    std::remove(tmp.c_str());
    throw Error(path, "cannot rename '" + tmp + "' into place: " + ec.message());
  }
}

}  // namespace omni::io
