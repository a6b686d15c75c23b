// The key/value cache every decoder uses: per layer one [B, kv_heads, capacity, head_dim] buffer
// for keys and one for values. A forward step reserves room, writes its new keys/values at
// positions [length, length + T) in place (no torch::cat per step) and attends over the prefix.
// Copies are copy-on-write: fork() shares the buffers until one side appends (BAGEL's
// inferencer deep-copies its contexts; here that costs nothing until they diverge). Capacity grows
// by doubling when a reserve does not fit.
#pragma once
#include <torch/torch.h>

#include <memory>
#include <vector>

namespace omni::nn {

class KVCache {
 public:
  KVCache() = default;
  // An empty cache; buffers are allocated by the first reserve() (in its dtype and device).
  KVCache(int64_t layers, int64_t kv_heads, int64_t head_dim, int64_t batch = 1)
      : layers_(layers), kv_heads_(kv_heads), head_dim_(head_dim), batch_(batch) {}
  // A cache with `capacity` positions allocated up front.
  static KVCache allocate(int64_t layers, int64_t batch, int64_t kv_heads, int64_t capacity, int64_t head_dim,
                          const torch::TensorOptions& opts);

  int64_t length = 0;  // positions filled (all layers)
  int64_t rope = 0;    // next RoPE position (BAGEL's `ropes`: an image block takes one position)

  KVCache fork() const { return *this; }
  bool empty() const { return length == 0; }
  int64_t layers() const { return layers_; }
  int64_t batch() const { return batch_; }
  int64_t capacity() const { return buf_ ? buf_->k[0].size(2) : 0; }

  // Makes room for `t` more positions: a shared or too small buffer is copied (growing by
  // doubling); afterwards writes are in place. The first buffers take `opts`' dtype, later ones
  // keep it.
  void reserve(int64_t t, const torch::TensorOptions& opts);
  // Writes layer l's new keys / values [B, kvH, t, D] at [length, length + t) (after reserve),
  // rounded to the cache's dtype where that is narrower.
  void write(int64_t l, const torch::Tensor& k, const torch::Tensor& v);
  // Layer l's first n positions (n < 0: `length`) [B, kvH, n, D] (views).
  torch::Tensor keys(int64_t l, int64_t n = -1) const;
  torch::Tensor values(int64_t l, int64_t n = -1) const;
  uint64_t bytes() const;

 private:
  struct Buffers {
    std::vector<torch::Tensor> k, v;
  };
  std::shared_ptr<Buffers> buf_;
  int64_t layers_ = 0, kv_heads_ = 0, head_dim_ = 0, batch_ = 1;
};

// The dtype a decoder's cache holds its keys and values in: the compute dtype, but bf16 where the
// decoder's linears are stored bf16 over fp32 compute (--dtype bf16 on a CPU without bf16 GEMM
// kernels, linear.h): half the cache's bytes (Janus-Pro-7B, a 384^2 image's CFG pair: 1.2 -> 0.6
// GB) and the rounding a bf16 model's cache makes. attention() reads such a cache directly.
c10::ScalarType kv_cache_dtype(c10::ScalarType compute, c10::ScalarType linear_weights);
// The options a decoder's cache is made with: x's device (x: its input, or a tensor in the compute
// dtype), and kv_cache_dtype of x's dtype and of `k_proj_weight`'s (a key projection of its layers).
inline torch::TensorOptions kv_cache_options(const torch::Tensor& x, const torch::Tensor& k_proj_weight) {
  return x.options().dtype(kv_cache_dtype(x.scalar_type(), k_proj_weight.scalar_type()));
}
// The cache's first positions `cached` [B, kvH, n, D] followed by new ones `fresh` [B, kvH, t, D]
// in fresh's dtype (a query that leaves a bf16 cache unchanged reads it widened, its own rows
// unrounded).
torch::Tensor cached_then_fresh(const torch::Tensor& cached, const torch::Tensor& fresh);

}  // namespace omni::nn
