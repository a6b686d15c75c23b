#include "omni/io/safetensors.h"
#include "omni/io/output_file.h"

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <limits>
#include <set>
#include <string>
#include <vector>
#include <nlohmann/json.hpp>

#include "omni/core/error.h"

namespace omni::io {
namespace {

// The reference implementation refuses headers above 100 MB; so do we (a lying length
// must not make us parse gigabytes of tensor data as JSON).
constexpr uint64_t kMaxHeaderBytes = 100ull << 20;

uint64_t read_u64_le(const uint8_t* p) {
  uint64_t v = 0;
  for (int i = 7; i >= 0; --i) v = (v << 8) | p[i];
  return v;
}

std::vector<int64_t> parse_shape(const nlohmann::json& j, const std::string& ctx) {
  if (!j.is_array()) throw Error(ctx, "\"shape\" must be an array of non-negative integers");
  std::vector<int64_t> shape;
  unsigned __int128 numel = 1;  // the element count overflowed int64 ([2^32, 2^32, 16] read as 0 elements)
  for (const auto& d : j) {
    if (!d.is_number_unsigned()) throw Error(ctx, "\"shape\" must be an array of non-negative integers");
    uint64_t v = d.get<uint64_t>();
    if (v > (1ull << 48)) throw Error(ctx, "dimension " + std::to_string(v) + " is implausibly large");
    numel = numel * v > (static_cast<unsigned __int128>(1) << 62) ? (static_cast<unsigned __int128>(1) << 63) : numel * v;
    shape.push_back(static_cast<int64_t>(v));
  }
  if (numel > (static_cast<unsigned __int128>(1) << 62)) throw Error(ctx, "shape holds more than 2^62 elements");
  return shape;
}

}  // namespace

std::shared_ptr<SafetensorsFile> SafetensorsFile::open(const std::string& path) {
  auto st = std::make_shared<SafetensorsFile>();
  st->file_ = MappedFile::open(path);
  const uint8_t* base = st->file_->data();
  const uint64_t size = st->file_->size();
  if (size < 8) throw Error(path, "not a safetensors file: " + std::to_string(size) + " bytes, expected at least an 8-byte header length");
  const uint64_t n = read_u64_le(base);
  if (n > kMaxHeaderBytes) throw Error(path, "header length " + std::to_string(n) + " exceeds the 100 MB limit (corrupt or not safetensors)");
  if (n > size - 8) throw Error(path, "header length " + std::to_string(n) + " exceeds the file size " + std::to_string(size) + " (truncated?)");
  if (n < 2) throw Error(path, "header length " + std::to_string(n) + " is too small for a JSON object");

  nlohmann::json header;
  // A JSON object with a repeated key is ambiguous (the parser would keep the last one, another
  // reader the first): refuse it, in the tensor table and inside any entry.
  std::vector<std::set<std::string>> keys_per_object;
  std::string duplicate;
  auto refuse_duplicates = [&](int, nlohmann::json::parse_event_t ev, nlohmann::json& parsed) {
    using E = nlohmann::json::parse_event_t;
    if (ev == E::object_start) keys_per_object.emplace_back();
    if (ev == E::object_end && !keys_per_object.empty()) keys_per_object.pop_back();
    if (ev == E::key && !keys_per_object.empty() && !keys_per_object.back().insert(parsed.get<std::string>()).second &&
        duplicate.empty())
      duplicate = parsed.get<std::string>();
    return true;
  };
  try {
    header = nlohmann::json::parse(base + 8, base + 8 + n, refuse_duplicates);
  } catch (const nlohmann::json::exception& e) {
    throw Error(path, std::string("header is not valid JSON: ") + e.what());
  }
  if (!duplicate.empty()) throw Error(path, "header names '" + duplicate + "' twice (ambiguous; refused)");
  if (!header.is_object()) throw Error(path, "header must be a JSON object");

  const uint64_t data_start = 8 + n;
  const uint64_t data_size = size - data_start;
  struct Span { uint64_t begin, end; size_t idx; };
  std::vector<Span> spans;
  for (auto it = header.begin(); it != header.end(); ++it) {
    const std::string& name = it.key();
    if (name == "__metadata__") {
      if (!it.value().is_object()) throw Error(path, "__metadata__ must be an object of strings");
      for (auto m = it.value().begin(); m != it.value().end(); ++m) {
        if (!m.value().is_string()) throw Error(path, "__metadata__ value '" + m.key() + "' is not a string");
        st->metadata_[m.key()] = m.value().get<std::string>();
      }
      continue;
    }
    const std::string ctx = path + ": tensor '" + name + "'";
    const auto& e = it.value();
    if (!e.is_object() || !e.contains("dtype") || !e.contains("shape") || !e.contains("data_offsets"))
      throw Error(ctx, "expected an object with dtype, shape and data_offsets");
    if (!e["dtype"].is_string()) throw Error(ctx, "\"dtype\" must be a string");
    TensorInfo info;
    info.name = name;
    info.file = path;
    info.dtype = parse_dtype(e["dtype"].get<std::string>(), ctx);
    info.shape = parse_shape(e["shape"], ctx);
    const auto& off = e["data_offsets"];
    if (!off.is_array() || off.size() != 2 || !off[0].is_number_unsigned() || !off[1].is_number_unsigned())
      throw Error(ctx, "\"data_offsets\" must be [begin, end] with non-negative integers");
    const uint64_t b = off[0].get<uint64_t>(), en = off[1].get<uint64_t>();
    if (b > en) throw Error(ctx, "data_offsets [" + std::to_string(b) + ", " + std::to_string(en) + "] run backwards");
    if (en > data_size)
      throw Error(ctx, "data_offsets end " + std::to_string(en) + " lies outside the " +
                           std::to_string(data_size) + "-byte data section (truncated file?)");
    const int64_t numel = numel_of(info.shape);
    const uint64_t expect = static_cast<uint64_t>(numel) * dtype_size(info.dtype);
    if (en - b != expect)
      throw Error(ctx, std::string(dtype_name(info.dtype)) + " " + shape_str(info.shape) + " needs " +
                           std::to_string(expect) + " bytes but data_offsets span " + std::to_string(en - b));
    info.nbytes = expect;
    spans.push_back({b, en, st->tensors_.size()});
    st->tensors_.push_back(std::move(info));
    st->offsets_.push_back(data_start + b);
  }
  // No two tensors may share bytes.
  std::sort(spans.begin(), spans.end(), [](const Span& a, const Span& b) { return a.begin < b.begin; });
  for (size_t i = 1; i < spans.size(); ++i) {
    if (spans[i].begin < spans[i - 1].end && spans[i].end > spans[i].begin)
      throw Error(path, "tensors '" + st->tensors_[spans[i - 1].idx].name + "' and '" +
                            st->tensors_[spans[i].idx].name + "' overlap in the data section");
  }
  // Present tensors in file order.
  std::vector<TensorInfo> ordered;
  std::vector<uint64_t> offsets;
  for (const auto& s : spans) {
    ordered.push_back(st->tensors_[s.idx]);
    offsets.push_back(st->offsets_[s.idx]);
  }
  st->tensors_ = std::move(ordered);
  st->offsets_ = std::move(offsets);
  for (size_t i = 0; i < st->tensors_.size(); ++i) st->index_[st->tensors_[i].name] = i;
  return st;
}

const TensorInfo& SafetensorsFile::info(const std::string& name) const {
  auto it = index_.find(name);
  if (it == index_.end()) throw Error(path(), "no tensor named '" + name + "'");
  return tensors_[it->second];
}

const uint8_t* SafetensorsFile::data(const std::string& name) const {
  auto it = index_.find(name);
  if (it == index_.end()) throw Error(path(), "no tensor named '" + name + "'");
  return file_->data() + offsets_[it->second];
}

void write_safetensors(const std::string& path, const std::vector<RawTensor>& tensors,
                       const std::map<std::string, std::string>& metadata) {
  write_safetensors_streamed(path, tensors, [&](size_t i) { return tensors[i].data; }, metadata);
}

void write_safetensors_streamed(const std::string& path, const std::vector<RawTensor>& tensors,
                                const std::function<const void*(size_t i)>& bytes_of,
                                const std::map<std::string, std::string>& metadata) {
  nlohmann::ordered_json header = nlohmann::ordered_json::object();
  if (!metadata.empty()) header["__metadata__"] = metadata;
  uint64_t offset = 0;
  std::vector<uint64_t> sizes;
  for (const auto& t : tensors) {
    if (header.contains(t.name)) throw Error(path, "duplicate tensor name '" + t.name + "'");
    const uint64_t bytes = static_cast<uint64_t>(numel_of(t.shape)) * dtype_size(t.dtype);
    header[t.name] = {{"dtype", dtype_name(t.dtype)}, {"shape", t.shape}, {"data_offsets", {offset, offset + bytes}}};
    offset += bytes;
    sizes.push_back(bytes);
  }
  std::string h = header.dump();
  while (h.size() % 8 != 0) h.push_back(' ');
  const std::string tmp = temporary_path_for(path);
  check_replaceable(path);  // before a temporary appears beside it (/dev/full.tmp)
  FILE* f = std::fopen(tmp.c_str(), "wb");
  if (!f) throw Error(path, std::string("cannot open for writing: ") + std::strerror(errno));
  uint8_t len[8];
  for (int i = 0; i < 8; ++i) len[i] = static_cast<uint8_t>((h.size() >> (8 * i)) & 0xff);
  bool ok = std::fwrite(len, 1, 8, f) == 8 && std::fwrite(h.data(), 1, h.size(), f) == h.size();
  try {
    for (size_t i = 0; ok && i < tensors.size(); ++i)
      ok = sizes[i] == 0 || std::fwrite(bytes_of(i), 1, sizes[i], f) == sizes[i];
  } catch (...) {
    std::fclose(f);
    std::remove(tmp.c_str());
    throw;
  }
  ok = (std::fclose(f) == 0) && ok;
  if (!ok) {
    std::remove(tmp.c_str());
    throw Error(path, "write failed (disk full?)");
  }
  commit_temporary(tmp, path);  // refuses to replace a device or pipe (a --trace at /dev/full)
}

}  // namespace omni::io
