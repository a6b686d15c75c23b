#include "omni/io/checkpoint_torch.h"

#include <algorithm>
#include <cstring>
#include <filesystem>

#include "omni/core/error.h"
#include "omni/core/memory.h"
#include "omni/io/dtype_torch.h"
#include "omni/io/safetensors.h"
#include "omni/io/shard_index.h"
#include "omni/io/torch_bin_torch.h"

namespace fs = std::filesystem;

namespace omni {

DType from_torch(torch::ScalarType t) {
  if (auto d = try_from_torch(t)) return *d;
  throw Error(std::string("dtype ") + c10::toString(t), "cannot be stored in a checkpoint");
}

namespace io {

struct Checkpoint::Source {
  virtual ~Source() = default;
  virtual std::vector<TensorInfo> list() const = 0;
  virtual torch::Tensor get(const TensorInfo& info) const = 0;
  virtual void release(const TensorInfo&) const {}
};

namespace {

class SafetensorsSource : public Checkpoint::Source {
 public:
  explicit SafetensorsSource(const std::string& path) : file_(SafetensorsFile::open(path)) {}
  std::vector<TensorInfo> list() const override { return file_->tensors(); }
  torch::Tensor get(const TensorInfo& info) const override {
    const uint8_t* p = file_->data(info.name);
    std::vector<int64_t> shape = info.shape;
    const auto type = to_torch(info.dtype);
    if (info.nbytes == 0) return torch::empty(shape, torch::TensorOptions().dtype(type));
    if (reinterpret_cast<uintptr_t>(p) % dtype_size(info.dtype) != 0) {
      // Misaligned element data (legal in the format, rare in practice): copy out.
      auto t = torch::empty(shape, torch::TensorOptions().dtype(type));
      std::memcpy(t.data_ptr(), p, info.nbytes);
      return t;
    }
    auto keep = file_;  // the view keeps the mapping alive
    return torch::from_blob(const_cast<uint8_t*>(p), shape, [keep](void*) {},
                            torch::TensorOptions().dtype(type));
  }

  void release(const TensorInfo& info) const override { drop_whole_pages(file_->data(info.name), info.nbytes); }

 private:
  std::shared_ptr<SafetensorsFile> file_;
};

bool is_safetensors(const std::string& p) { return ends_with(p, ".safetensors"); }
bool is_torch_bin(const std::string& p) {
  return ends_with(p, ".bin") || ends_with(p, ".pt") || ends_with(p, ".pth");
}

std::shared_ptr<Checkpoint::Source> open_source(const std::string& file);

// PyTorch .bin (torch.save zip): no zero-copy; a storage is read from the zip the first time
// one of its tensors is requested, then cached for tensors that share it.
class TorchBinSource : public Checkpoint::Source {
 public:
  explicit TorchBinSource(const std::string& path) : file_(TorchBinFile::open(path)) {}
  std::vector<TensorInfo> list() const override { return file_->tensors(); }
  torch::Tensor get(const TensorInfo& info) const override { return file_->get(info.name); }

 private:
  std::shared_ptr<TorchBinFile> file_;
};

std::shared_ptr<Checkpoint::Source> make_torch_bin_source(const std::string& path) {
  return std::make_shared<TorchBinSource>(path);
}

}  // namespace

std::vector<std::string> Checkpoint::weight_files_in_dir(const std::string& dir) {
  if (!fs::is_directory(dir)) throw Error(dir, "not a directory");
  for (const char* index : {"model.safetensors.index.json", "pytorch_model.bin.index.json"}) {
    fs::path p = fs::path(dir) / index;
    if (fs::is_regular_file(p)) return {p.string()};
  }
  std::vector<std::string> st, bin;
  for (const auto& e : fs::directory_iterator(dir)) {
    if (!e.is_regular_file()) continue;
    const std::string p = e.path().string();
    if (is_safetensors(p)) st.push_back(p);
    else if (is_torch_bin(p) && e.path().filename().string().rfind("pytorch_model", 0) == 0) bin.push_back(p);
  }
  std::sort(st.begin(), st.end());
  std::sort(bin.begin(), bin.end());
  if (!st.empty()) return st;
  if (!bin.empty()) return bin;
  throw Error(dir, "no weights found (expected *.safetensors, a *.index.json or pytorch_model*.bin)");
}

Checkpoint Checkpoint::open(const std::string& path) {
  if (fs::is_directory(path)) {
    auto files = weight_files_in_dir(path);
    if (files.size() == 1 && ends_with(files[0], ".index.json")) {
      Checkpoint c = open(files[0]);
      c.label_ = path;
      return c;
    }
    return open_files(files, path);
  }
  if (!fs::exists(path)) throw Error(path, "no such file or directory");
  if (ends_with(path, ".index.json")) {
    ShardIndex idx = read_shard_index(path);
    Checkpoint c = open_files(idx.shards, path);
    // Strict 1:1 between the index and the shards.
    for (const auto& [name, shard] : idx.weight_map) {
      auto it = c.where_.find(name);
      if (it == c.where_.end())
        throw Error(path, "lists tensor '" + name + "' in shard '" + fs::path(shard).filename().string() +
                              "', which does not contain it");
      if (c.infos_[it->second].file != shard)
        throw Error(path, "lists tensor '" + name + "' in shard '" + fs::path(shard).filename().string() +
                              "' but it is in '" + fs::path(c.infos_[it->second].file).filename().string() + "'");
    }
    for (const auto& info : c.infos_)
      if (!idx.weight_map.count(info.name))
        throw Error(path, "shard '" + fs::path(info.file).filename().string() + "' holds tensor '" + info.name +
                              "' that the index does not list");
    return c;
  }
  return open_files({path}, path);
}

Checkpoint Checkpoint::open_files(const std::vector<std::string>& files, const std::string& label) {
  Checkpoint c;
  c.label_ = label;
  c.files_ = files;
  for (const auto& f : files) {
    auto src = open_source(f);
    const size_t si = c.sources_.size();
    c.sources_.push_back(src);
    for (auto& info : src->list()) {
      auto dup = c.where_.find(info.name);
      if (dup != c.where_.end())
        throw Error(label, "tensor '" + info.name + "' appears in both '" + c.infos_[dup->second].file +
                               "' and '" + f + "'");
      c.where_[info.name] = c.infos_.size();
      c.infos_.push_back(std::move(info));
      c.source_of_.push_back(si);
    }
  }
  return c;
}

const TensorInfo& Checkpoint::info(const std::string& name) const {
  auto it = where_.find(name);
  if (it == where_.end()) throw Error(label_, "no tensor named '" + name + "'");
  return infos_[it->second];
}

uint64_t Checkpoint::total_bytes() const {
  uint64_t n = 0;
  for (const auto& i : infos_) n += i.nbytes;
  return n;
}

torch::Tensor Checkpoint::get(const std::string& name) const {
  auto it = where_.find(name);
  if (it == where_.end()) throw Error(label_, "no tensor named '" + name + "'");
  return sources_[source_of_[it->second]]->get(infos_[it->second]);
}

void Checkpoint::release(const std::string& name) const {
  auto it = where_.find(name);
  if (it != where_.end()) sources_[source_of_[it->second]]->release(infos_[it->second]);
}

torch::Tensor Checkpoint::get(const std::string& name, torch::ScalarType dtype) const {
  return get(name).to(dtype);
}

namespace {
std::shared_ptr<Checkpoint::Source> open_source(const std::string& file) {
  if (is_safetensors(file)) return std::make_shared<SafetensorsSource>(file);
  if (is_torch_bin(file)) return make_torch_bin_source(file);
  throw Error(file, "unrecognised checkpoint file (expected .safetensors, .bin or *.index.json)");
}
}  // namespace

}  // namespace io
}  // namespace omni
