// safetensors: an 8-byte little-endian header length N, N bytes of JSON
// ({name: {dtype, shape, data_offsets: [begin, end]}, "__metadata__": {str: str}}), then the data.
// The reader memory-maps the file and validates the whole header before handing out views.
#pragma once
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "omni/io/dtype.h"
#include "omni/io/mapped_file.h"

namespace omni::io {

class SafetensorsFile {
 public:
  // Opens and validates; throws omni::Error naming the file and the first problem found.
  static std::shared_ptr<SafetensorsFile> open(const std::string& path);

  const std::string& path() const { return file_->path(); }
  // Tensors in data-offset order.
  const std::vector<TensorInfo>& tensors() const { return tensors_; }
  const std::map<std::string, std::string>& metadata() const { return metadata_; }
  bool contains(const std::string& name) const { return index_.count(name) != 0; }
  const TensorInfo& info(const std::string& name) const;  // throws naming tensor and file
  // Start of the tensor's bytes inside the mapping (alignment not guaranteed).
  const uint8_t* data(const std::string& name) const;
  const std::shared_ptr<MappedFile>& mapping() const { return file_; }

 private:
  std::shared_ptr<MappedFile> file_;
  std::vector<TensorInfo> tensors_;
  std::vector<uint64_t> offsets_;  // absolute offset of each tensor's data in the file
  std::map<std::string, size_t> index_;
  std::map<std::string, std::string> metadata_;
};

// Raw bytes of one tensor to write.
struct RawTensor {
  std::string name;
  DType dtype;
  std::vector<int64_t> shape;
  const void* data;  // numel * dtype_size bytes, little-endian, contiguous
};

// Writes a safetensors file (header padded with spaces to a multiple of 8, tensors in the given
// order). Writes to "<path>.tmp" then renames, so a failed write never leaves a half file.
void write_safetensors(const std::string& path, const std::vector<RawTensor>& tensors,
                       const std::map<std::string, std::string>& metadata = {});

// The same file from a layout (each RawTensor's data unused), asking `bytes_of(i)` for tensor i's
// bytes in order; the pointer need only live until the next call, so one tensor at a time is in
// memory (an export of a model larger than the memory left).
void write_safetensors_streamed(const std::string& path, const std::vector<RawTensor>& layout,
                                const std::function<const void*(size_t i)>& bytes_of,
                                const std::map<std::string, std::string>& metadata = {});

}  // namespace omni::io
