// Element types found in checkpoints (safetensors and torch .bin), independent of libtorch.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace omni {

enum class DType { F64, F32, F16, BF16, I64, I32, I16, I8, U8, BOOL };

// Safetensors spelling: "F32", "BF16", ...
const char* dtype_name(DType t);
// Parses the safetensors spelling; throws omni::Error naming `context` on unknown names.
DType parse_dtype(const std::string& name, const std::string& context);
size_t dtype_size(DType t);

// What a checkpoint says about one tensor, without its data.
struct TensorInfo {
  std::string name;
  DType dtype = DType::F32;
  std::vector<int64_t> shape;
  uint64_t nbytes = 0;     // bytes of the tensor's own elements
  std::string file;        // the file that holds it
};

int64_t numel_of(const std::vector<int64_t>& shape);
std::string shape_str(const std::vector<int64_t>& shape);  // "[2, 3]"

}  // namespace omni
