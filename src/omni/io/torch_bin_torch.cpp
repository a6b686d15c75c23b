// Reader for torch.save zip checkpoints and their Hugging Face shard indexes (see torch_bin.h).
#include <caffe2/serialize/inline_container.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>
#include <unordered_map>

#include "omni/core/error.h"
#include "omni/io/pickle_torch.h"
#include "omni/io/torch_bin_torch.h"
#include "omni/io/dtype_torch.h"
#include "omni/io/shard_index.h"

namespace fs = std::filesystem;

namespace omni::io {
namespace {

// The first line of a c10::Error (its backtrace-free message can still be long).
std::string first_line(const char* s) {
  std::string m(s);
  auto nl = m.find('\n');
  return nl == std::string::npos ? m : m.substr(0, nl);
}


// Looks at the first bytes to give a precise error before libtorch's zip reader does.
void check_signature(const std::string& path) {
  std::error_code ec;
  if (!fs::exists(path, ec)) throw Error(path, "no such file");
  if (fs::is_directory(path, ec)) throw Error(path, "is a directory, not a torch.save file");
  std::ifstream in(path, std::ios::binary);
  if (!in) throw Error(path, "cannot open for reading");
  unsigned char head[4] = {0, 0, 0, 0};
  in.read(reinterpret_cast<char*>(head), 4);
  std::streamsize got = in.gcount();
  if (got == 0) throw Error(path, "empty file, not a torch.save checkpoint");
  if (got == 4 && head[0] == 'P' && head[1] == 'K' && head[2] == 3 && head[3] == 4) return;
  if (head[0] == 0x80)
    throw Error(path,
                "legacy (torch < 1.6, non-zip) torch.save format is not supported; re-save it with a "
                "newer torch or convert it to safetensors");
  throw Error(path, "not a torch.save checkpoint (no zip signature)");
}

}  // namespace

struct TorchBinFile::Impl {
  std::string path;
  std::unique_ptr<caffe2::serialize::PyTorchStreamReader> reader;
  torch_pickle::StateDict sd;
  std::vector<TensorInfo> infos;
  std::unordered_map<std::string, size_t> index;
  mutable std::mutex mu;
  mutable std::vector<std::optional<c10::Storage>> cache;

  // Wraps the zip reader's c10::Error into omni::Error.
  template <class F>
  auto zip(const std::string& doing, F&& f) const {
    try {
      return f();
    } catch (const c10::Error& e) {
      throw Error(path, doing + ": " + first_line(e.what_without_backtrace()));
    }
  }

  c10::Storage storage(size_t i) const {  // caller holds mu
    if (cache[i]) return *cache[i];
    const auto& ref = sd.storages[i];
    const std::string record = "data/" + ref.key;
    auto [ptr, size] = zip("reading storage record '" + record + "'",
                           [&] { return reader->getRecord(record); });
    const uint64_t need = static_cast<uint64_t>(ref.numel) * dtype_size(ref.dtype);
    if (size < need)
      throw Error(path, "storage record '" + record + "' holds " + std::to_string(size) +
                            " bytes but the pickle declares " + std::to_string(ref.numel) + " " +
                            dtype_name(ref.dtype) + " elements (" + std::to_string(need) + " bytes)");
    c10::Storage st(c10::Storage::use_byte_size_t(), size, std::move(ptr), nullptr, false);
    cache[i] = st;
    return st;
  }

  torch::Tensor tensor(size_t i) const {
    std::lock_guard<std::mutex> lock(mu);
    const auto& t = sd.tensors[i].second;
    c10::Storage st = storage(t.storage);
    torch::Tensor out =
        torch::empty({0}, torch::TensorOptions().dtype(to_torch(sd.storages[t.storage].dtype)));
    out.set_(st, t.offset, t.sizes, t.strides);
    return out;
  }
};

TorchBinFile::TorchBinFile(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
TorchBinFile::~TorchBinFile() = default;

std::shared_ptr<TorchBinFile> TorchBinFile::open(const std::string& path) {
  check_signature(path);
  auto impl = std::make_unique<Impl>();
  impl->path = path;
  impl->reader = impl->zip("not a readable torch.save zip archive (truncated or corrupt?)", [&] {
    return std::make_unique<caffe2::serialize::PyTorchStreamReader>(path);
  });
  auto& reader = *impl->reader;
  if (!impl->zip("reading the zip directory", [&] { return reader.hasRecord("data.pkl"); })) {
    bool script = impl->zip("reading the zip directory", [&] {
      return reader.hasRecord("constants.pkl") || reader.hasRecord("code/__torch__.py");
    });
    if (script)
      throw Error(path, "a TorchScript archive (torch.jit.save), not a torch.save state dict");
    throw Error(path, "zip archive without a data.pkl record: not a torch.save checkpoint");
  }
  if (impl->zip("reading the zip directory", [&] { return reader.hasRecord("byteorder"); })) {
    auto [ptr, size] = impl->zip("reading record 'byteorder'", [&] { return reader.getRecord("byteorder"); });
    std::string order(static_cast<const char*>(ptr.get()), size);
    if (order != "little")
      throw Error(path, "byteorder record says '" + order.substr(0, 16) +
                            "'; only little-endian checkpoints are supported");
  }
  auto [pkl, pkl_size] = impl->zip("reading record 'data.pkl'", [&] { return reader.getRecord("data.pkl"); });
  impl->sd = torch_pickle::parse_state_dict(static_cast<const uint8_t*>(pkl.get()), pkl_size,
                                            path + ": pickle");

  // Every storage a tensor uses must be a record (sizes are checked when a storage is read).
  std::vector<bool> checked(impl->sd.storages.size(), false);
  for (const auto& [name, t] : impl->sd.tensors) {
    if (checked[t.storage]) continue;
    const std::string record = "data/" + impl->sd.storages[t.storage].key;
    if (!impl->zip("reading the zip directory", [&] { return reader.hasRecord(record); }))
      throw Error(path, "tensor '" + name + "' uses storage record '" + record + "', which is missing");
    checked[t.storage] = true;
  }
  impl->cache.resize(impl->sd.storages.size());
  for (size_t i = 0; i < impl->sd.tensors.size(); ++i) {
    const auto& [name, t] = impl->sd.tensors[i];
    TensorInfo info;
    info.name = name;
    info.dtype = impl->sd.storages[t.storage].dtype;
    info.shape = t.sizes;
    info.nbytes = static_cast<uint64_t>(numel_of(t.sizes)) * dtype_size(info.dtype);
    info.file = path;
    impl->index[name] = i;  // names are unique: the pickle's dict already merged duplicates
    impl->infos.push_back(std::move(info));
  }
  return std::shared_ptr<TorchBinFile>(new TorchBinFile(std::move(impl)));
}

const std::string& TorchBinFile::path() const { return impl_->path; }
const std::vector<TensorInfo>& TorchBinFile::tensors() const { return impl_->infos; }
bool TorchBinFile::contains(const std::string& name) const { return impl_->index.count(name) != 0; }

const TensorInfo& TorchBinFile::info(const std::string& name) const {
  auto it = impl_->index.find(name);
  if (it == impl_->index.end()) throw Error(impl_->path, "no tensor named '" + name + "'");
  return impl_->infos[it->second];
}

torch::Tensor TorchBinFile::get(const std::string& name) const {
  auto it = impl_->index.find(name);
  if (it == impl_->index.end()) throw Error(impl_->path, "no tensor named '" + name + "'");
  return impl_->tensor(it->second);
}

NamedTensors TorchBinFile::load_all() const {
  NamedTensors out;
  out.reserve(impl_->infos.size());
  for (size_t i = 0; i < impl_->infos.size(); ++i)
    out.emplace_back(impl_->infos[i].name, impl_->tensor(i));
  return out;
}

void TorchBinFile::drop_cache() const {
  std::lock_guard<std::mutex> lock(impl_->mu);
  for (auto& c : impl_->cache) c.reset();
}

std::vector<TensorInfo> list_torch_bin(const std::string& path) {
  return TorchBinFile::open(path)->tensors();
}

NamedTensors load_torch_bin(const std::string& path) { return TorchBinFile::open(path)->load_all(); }

bool is_torch_bin_index(const std::string& path) { return ends_with(path, ".bin.index.json"); }

}  // namespace omni::io
