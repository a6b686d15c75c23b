// The value an additive attention mask writes for a blocked key, and how many leading keys a
// block of query rows sees through such a mask.
#pragma once
#include <ATen/ATen.h>
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

// How many leading keys a block of query rows can see through an additive mask [B|1, 1, n, S]:
// keys after the last one any row sees add exactly zero to every softmax (a blocked score,
// -inf or the dtype's lowest value as HF writes it, is exp(...) = 0 next to a visible one), so
// attention over the leading keys alone is the same. A row that sees no key at all gets HF's
// uniform softmax over every key, so then all S are kept.
inline int64_t keys_seen(const at::Tensor& mask_block) {
  const int64_t S = mask_block.size(-1);
  auto seen = mask_block.gt(finfo_lowest(mask_block.scalar_type()));  // [B|1, 1, n, S]
  if (!seen.any(-1).all().item<bool>()) return S;  // a row that sees nothing
  auto cols = seen.flatten(0, 2).any(0);            // [S]: seen by some row
  return cols.nonzero().max().item<int64_t>() + 1;
}

}  // namespace omni::nn
