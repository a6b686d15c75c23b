#include "omni/nn/kv_cache.h"

#include <cstdio>

#include "omni/core/error.h"
#include "omni/core/memory.h"

namespace omni::nn {

KVCache KVCache::allocate(int64_t layers, int64_t batch, int64_t kv_heads, int64_t capacity, int64_t head_dim,
                          const torch::TensorOptions& opts) {
  KVCache c(layers, kv_heads, head_dim, batch);
  c.reserve(capacity, opts);
  return c;
}

void KVCache::reserve(int64_t t, const torch::TensorOptions& opts) {
  check(layers_ > 0, "kv cache", "not made for a model (no layers)");
  const int64_t need = length + t;
  // Buffers keep the dtype they were made in (a bf16 cache under fp32 compute: kv_cache_dtype).
  const torch::TensorOptions o = buf_ ? opts.dtype(buf_->k[0].scalar_type()) : opts;
  const bool shared = buf_ && buf_.use_count() > 1;
  const int64_t cap = capacity();
  if (buf_ && !shared && need <= cap) return;
  const int64_t new_cap = need <= cap ? cap : std::max<int64_t>(need, std::max<int64_t>(64, cap * 2));
  // The positions a request needs can never fit: an error now, not the OOM killer later (Janus
  // with --parallel_size 100000). Only `need`: the doubled capacity beyond it is never touched.
  if (o.device().is_cpu()) {
    const double bytes = 2.0 * layers_ * batch_ * kv_heads_ * need * head_dim_ *
                         static_cast<double>(c10::elementSize(c10::typeMetaToScalarType(o.dtype())));
    const size_t avail = available_memory_bytes();
    if (avail > 0 && bytes > static_cast<double>(avail)) {
      char msg[256];
      std::snprintf(msg, sizeof msg,
                    "%lld sequence(s) of %lld positions need %.1f GiB, more than the %.1f GiB of memory available "
                    "(fewer images or sequences, or a shorter prompt or answer)",
                    static_cast<long long>(batch_), static_cast<long long>(need), bytes / (1 << 30),
                    static_cast<double>(avail) / (1 << 30));
      throw Error("kv cache", msg);
    }
  }
  auto nb = std::make_shared<Buffers>();
  for (int64_t l = 0; l < layers_; ++l) {
    auto k = torch::empty({batch_, kv_heads_, new_cap, head_dim_}, o);
    auto v = torch::empty({batch_, kv_heads_, new_cap, head_dim_}, o);
    if (buf_ && length > 0) {
      k.narrow(2, 0, length).copy_(buf_->k[l].narrow(2, 0, length));
      v.narrow(2, 0, length).copy_(buf_->v[l].narrow(2, 0, length));
    }
    nb->k.push_back(k);
    nb->v.push_back(v);
  }
  buf_ = nb;
}

void KVCache::write(int64_t l, const torch::Tensor& k, const torch::Tensor& v) {
  const int64_t t = k.size(2);
  check(buf_ && length + t <= capacity(), "kv cache", "write past the reserved positions");
  check(k.size(0) == batch_, "kv cache", "batch " + std::to_string(k.size(0)) + " written into a cache of batch " +
                                             std::to_string(batch_));
  buf_->k[l].narrow(2, length, t).copy_(k);
  buf_->v[l].narrow(2, length, t).copy_(v);
}

torch::Tensor KVCache::keys(int64_t l, int64_t n) const {
  if (!buf_) return {};
  return buf_->k[l].narrow(2, 0, n < 0 ? length : n);
}

torch::Tensor KVCache::values(int64_t l, int64_t n) const {
  if (!buf_) return {};
  return buf_->v[l].narrow(2, 0, n < 0 ? length : n);
}

c10::ScalarType kv_cache_dtype(c10::ScalarType compute, c10::ScalarType linear_weights) {
  return compute == c10::ScalarType::Float && linear_weights == c10::ScalarType::BFloat16 ? linear_weights : compute;
}

torch::Tensor cached_then_fresh(const torch::Tensor& cached, const torch::Tensor& fresh) {
  if (cached.scalar_type() == fresh.scalar_type()) return torch::cat({cached, fresh}, 2);
  auto sizes = fresh.sizes().vec();
  const int64_t n = cached.size(2), t = fresh.size(2);
  sizes[2] = n + t;
  auto out = torch::empty(sizes, fresh.options());
  out.narrow(2, 0, n).copy_(cached);
  out.narrow(2, n, t).copy_(fresh);
  return out;
}

uint64_t KVCache::bytes() const {
  if (!buf_) return 0;
  uint64_t n = 0;
  for (auto& t : buf_->k) n += t.numel() * t.element_size();
  for (auto& t : buf_->v) n += t.numel() * t.element_size();
  return n;
}

}  // namespace omni::nn
