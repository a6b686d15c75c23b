// The two GEMMs of an attention tile (attention_tiles.h) through oneDNN's matmul primitive, with
// each head's K and V packed once into the primitive's blocked layout and reused by every block of
// query rows. Internal to src/omni/nn (attention_tiles.cpp).
//
// Why: at::mm packs its right operand on every call. A tile of 256 rows over 4900 keys re-packed
// K and V (2 x 0.7 MB bf16) each time, ~0.05 ms per GEMM; OpenBLAS's fp32 route lost more. NaViT
// 980² attention (16 heads x 4900 patches, 2 threads, a layer): bf16 334-339 -> 319-330 ms, fp32
// 680-687 -> 605-615 ms; bf16 bit for bit equal to at::mm (the same oneDNN kernels), fp32 within
// summation-order rounding of OpenBLAS.
//
// Built where CMake finds oneDNN's headers (Debian's libdnnl-dev; libtorch links the same library);
// elsewhere create() returns nullptr and attention_tiles uses at::mm.
#pragma once
#include <ATen/ATen.h>

#include <cstdint>
#include <memory>

namespace omni::nn::detail {

class PackedTileGemms {
 public:
  // Row strides are in elements; each row's D elements are contiguous. `rows` is the tile's row
  // count and `last_rows` the last block's (Tq = k·rows + last_rows). nullptr where oneDNN is not
  // built in or declines (dtype other than fp32/bf16, a CPU without the kernels, layouts).
  static std::unique_ptr<PackedTileGemms> create(at::ScalarType st, int64_t rows, int64_t last_rows, int64_t S,
                                                 int64_t D, int64_t q_stride, int64_t k_stride, int64_t v_stride,
                                                 int64_t o_stride);
  ~PackedTileGemms();
  PackedTileGemms(const PackedTileGemms&) = delete;
  PackedTileGemms& operator=(const PackedTileGemms&) = delete;

  // One per thread: its oneDNN stream, scratchpad and packed K and V (primitives execute
  // concurrently only with a scratchpad per caller).
  class Worker {
   public:
    explicit Worker(const PackedTileGemms& gemms);
    ~Worker();
    Worker(const Worker&) = delete;
    Worker& operator=(const Worker&) = delete;
    // k, v: the head's [S, D] rows (at the strides given to create()).
    void pack(const void* k, const void* v);
    // scores [n, S] (contiguous) = q [n, D] · Kᵀ, n = rows or last_rows.
    void scores(void* scores, const void* q, int64_t n);
    // out [n, D] = p [n, S] (contiguous) · V.
    void values(void* out, const void* p, int64_t n);

   private:
    struct State;
    std::unique_ptr<State> s_;
  };

 private:
  struct Plan;
  explicit PackedTileGemms(std::unique_ptr<Plan> plan);
  std::unique_ptr<Plan> plan_;
};

}  // namespace omni::nn::detail
