// Mapping between checkpoint dtypes (omni::DType) and libtorch scalar types.
#pragma once
#include <torch/torch.h>

#include <optional>

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

// nullopt for scalar types that checkpoints cannot hold (complex, quantized...).
inline std::optional<DType> try_from_torch(torch::ScalarType t) {
  switch (t) {
    case torch::kFloat64: return DType::F64;
    case torch::kFloat32: return DType::F32;
    case torch::kFloat16: return DType::F16;
    case torch::kBFloat16: return DType::BF16;
    case torch::kInt64: return DType::I64;
    case torch::kInt32: return DType::I32;
    case torch::kInt16: return DType::I16;
    case torch::kInt8: return DType::I8;
    case torch::kUInt8: return DType::U8;
    case torch::kBool: return DType::BOOL;
    default: return std::nullopt;
  }
}

// Throws omni::Error for scalar types that checkpoints cannot hold.
DType from_torch(torch::ScalarType t);

}  // namespace omni
