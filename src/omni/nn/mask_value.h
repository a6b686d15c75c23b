// The value an additive attention mask writes for a blocked key.
#pragma once
#include <c10/core/ScalarType.h>
#include <c10/util/BFloat16.h>
#include <c10/util/Half.h>

#include <limits>

namespace omni::nn {

// HF's torch.finfo(dtype).min: the lowest finite value of the mask's dtype (float32 for any other
// dtype), as a double that converts to it exactly.
inline double finfo_lowest(c10::ScalarType st) {
  if (st == c10::ScalarType::BFloat16) return static_cast<float>(std::numeric_limits<c10::BFloat16>::lowest());
  if (st == c10::ScalarType::Half) return static_cast<float>(std::numeric_limits<c10::Half>::lowest());
  if (st == c10::ScalarType::Double) return std::numeric_limits<double>::lowest();
  return std::numeric_limits<float>::lowest();
}

}  // namespace omni::nn
