// A preallocated key/value cache for decoder-only attention: one [B, kv_heads, capacity, head_dim]
// buffer per layer for keys and one for values. A forward step writes its new keys/values into
// positions [length, length + T) in place (no torch::cat per step) and attends over [0, length + T).
#pragma once
#include <torch/torch.h>

#include <string>
#include <vector>

#include "omni/core/error.h"

namespace omni::nn {

struct KVCache {
  std::vector<torch::Tensor> k, v;  // per layer [B, kv_heads, capacity, head_dim]
  int64_t length = 0;               // positions filled so far (same for all layers)

  static KVCache allocate(int64_t layers, int64_t batch, int64_t kv_heads, int64_t capacity, int64_t head_dim,
                          const torch::TensorOptions& opts) {
    KVCache c;
    c.k.reserve(layers);
    c.v.reserve(layers);
    for (int64_t i = 0; i < layers; ++i) {
      c.k.push_back(torch::empty({batch, kv_heads, capacity, head_dim}, opts));
      c.v.push_back(torch::empty({batch, kv_heads, capacity, head_dim}, opts));
    }
    return c;
  }

  bool empty() const { return k.empty(); }
  int64_t layers() const { return static_cast<int64_t>(k.size()); }
  int64_t batch() const { return k.empty() ? 0 : k[0].size(0); }
  int64_t capacity() const { return k.empty() ? 0 : k[0].size(2); }
  void reset() { length = 0; }

  // Throws omni::Error when `t` more positions do not fit.
  void check_room(int64_t t) const {
    if (length + t > capacity())
      throw Error("kv cache", "needs " + std::to_string(length + t) + " positions, capacity is " +
                                  std::to_string(capacity()));
  }
  uint64_t bytes() const {
    uint64_t n = 0;
    for (const auto& t : k) n += t.numel() * t.element_size();
    for (const auto& t : v) n += t.numel() * t.element_size();
    return n;
  }
};

}  // namespace omni::nn
