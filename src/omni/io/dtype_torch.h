// Mapping between checkpoint dtypes (omni::DType) and libtorch scalar types.
#pragma once
#include <torch/torch.h>

#include "omni/io/dtype.h"

namespace omni {

inline torch::ScalarType to_torch(DType t) {
  switch (t) {
    case DType::F64: return torch::kFloat64;
    case DType::F32: return torch::kFloat32;
    case DType::F16: return torch::kFloat16;
    case DType::BF16: return torch::kBFloat16;
    case DType::I64: return torch::kInt64;
    case DType::I32: return torch::kInt32;
    case DType::I16: return torch::kInt16;
    case DType::I8: return torch::kInt8;
    case DType::U8: return torch::kUInt8;
    case DType::BOOL: return torch::kBool;
  }
  return torch::kFloat32;
}

// Throws omni::Error for scalar types that checkpoints cannot hold (complex, quantized...).
DType from_torch(torch::ScalarType t);

}  // namespace omni
