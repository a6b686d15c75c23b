#include "omni/nn/attention_tiles.h"

#include <ATen/Parallel.h>
#include <ATen/ThreadLocalState.h>
#include <c10/core/InferenceMode.h>

#include <algorithm>
#include <limits>
#include <memory>
#include <optional>
#include <vector>

#include "omni/nn/attention_tiles_onednn.h"
#include "omni/nn/cpu_bf16.h"
#include "omni/nn/mask_value.h"
#include "omni/nn/softmax_cpu.h"

namespace omni::nn {

namespace {

// Fewer query rows: attention()'s batched GEMMs do as well (fp32 gains 1.4x from 64 rows; oneDNN's
// per-call cost makes bf16 tiles slower up to ~300 rows, 0.84x at 256, 1.2x at 577).
constexpr int64_t kMinTileRowsFp32 = 64;
constexpr int64_t kMinTileRowsBf16 = 512;
constexpr int64_t kMinTileRowsPacked = 64;  // with K and V packed once (attention_tiles_onednn.h)
constexpr int64_t kTileRows = 256;         // measured best of 32..1024 at 1369-4900 keys, fp32 and bf16
constexpr int64_t kMaxTileBytes = 8 << 20;  // longer key ranges get fewer rows per tile

}  // namespace

at::Tensor attention_tiles(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, double scale, bool causal,
                           const at::Tensor& mask) {
  const auto st = q.scalar_type();
  const bool bf16 = st == at::kBFloat16;
  if (!q.device().is_cpu() || (st != at::kFloat && !bf16) || k.scalar_type() != st || v.scalar_type() != st ||
      !c10::InferenceMode::is_enabled() || (bf16 && !cpu_has_bf16_gemm()))  // attention() widens bf16 there
    return {};
  const int64_t B = q.size(0), H = q.size(1), Tq = q.size(2), D = q.size(3), kvH = k.size(1), S = k.size(2);
  const int64_t G = H / kvH, past = S - Tq;
  if (Tq < kMinTileRowsPacked || S == 0 || (causal && !mask.defined() && past < 0)) return {};
  const int64_t elem = bf16 ? 2 : 4;
  const int64_t rows = std::min(Tq, std::max<int64_t>(16, std::min(kTileRows, kMaxTileBytes / (S * elem))));
  const int64_t blocks = (Tq + rows - 1) / rows;

  // The keys each block of rows reads: up to its last row's under `causal`, up to the last key any
  // of its rows sees through `mask` (mask_value.h), else all.
  std::vector<int64_t> keys(blocks, S);
  for (int64_t b = 0; b < blocks; ++b) {
    const int64_t r0 = b * rows, n = std::min(rows, Tq - r0);
    if (mask.defined()) keys[b] = blocks > 1 ? keys_seen(mask.narrow(2, r0, n)) : S;
    else if (causal) keys[b] = past + r0 + n;
  }
  // Every block reading every key (no causal prefix): oneDNN with K and V packed once per head,
  // from 64 rows. Otherwise at::mm, and with fewer rows the batched route of attention() does as well.
  const bool all_keys = std::all_of(keys.begin(), keys.end(), [&](int64_t s) { return s == S; });
  const bool few_rows = Tq < (bf16 ? kMinTileRowsBf16 : kMinTileRowsFp32);
  if (!all_keys && few_rows) return {};
  // q prescaled in bf16, so the scores go from the GEMM straight to the one-pass softmax. q and
  // the output as contiguous heads for both routes: oneDNN's bf16 matmul on rows H·D apart
  // (NaViT's [T, H, D] layout) took 410 instead of 316 ms at 980², into such rows 350.
  const at::Tensor qd = (bf16 ? q * scale : q).contiguous();
  const at::Tensor out = at::empty({B, H, Tq, D}, q.options());
  // K and V: read once by the packing, in any layout with dense rows.
  auto rows_dense = [](const at::Tensor& t) { return t.stride(3) == 1 ? t : t.contiguous(); };
  at::Tensor kd = rows_dense(k), vd = rows_dense(v);
  std::unique_ptr<detail::PackedTileGemms> packed;
  if (all_keys)
    packed = detail::PackedTileGemms::create(st, rows, Tq - (blocks - 1) * rows, S, D, qd.stride(2), kd.stride(2),
                                             vd.stride(2), out.stride(2));
  if (!packed) {
    if (few_rows) return {};
    // Heads as contiguous [S, D] blocks: at::mm on a strided head view ([T, H, D] layouts, as
    // NaViT's) copies it first, once per tile (NaViT 980²: 451 -> 364 ms).
    kd = kd.contiguous(), vd = vd.contiguous();
  }
  const at::Tensor upper = causal && !mask.defined()  // [rows, rows]: key past + r0 + j hidden from row i iff j > i
                               ? at::ones({rows, rows}, q.options().dtype(at::kBool)).triu_(1)
                               : at::Tensor();
  // fp32: the softmax kernel applies the scale (softmax_cpu.h), saving a pass over the scores,
  // except under an additive mask, which is added to the scaled scores (the causal fill is -inf
  // either way). bf16: q carries it.
  const bool scale_scores = !bf16 && mask.defined();
  const float softmax_scale = bf16 || scale_scores ? 1.f : static_cast<float>(scale);
  const at::ThreadLocalState caller;  // inference mode and dispatch state for the worker threads
  at::parallel_for(0, B * H * blocks, 1, [&](int64_t t0, int64_t t1) {
    at::ThreadLocalStateGuard guard(caller);
    std::optional<detail::PackedTileGemms::Worker> worker;
    if (packed) worker.emplace(*packed);
    int64_t packed_kv = -1;  // the (batch, kv head) whose K and V the worker holds
    at::Tensor scores_buf = at::empty({rows * S}, q.options());
    for (int64_t t = t0; t < t1; ++t) {
      const int64_t b = t / (H * blocks), h = (t / blocks) % H, blk = t % blocks;
      const int64_t r0 = blk * rows, n = std::min(rows, Tq - r0), Sc = keys[blk];
      at::Tensor o = out[b][h].narrow(0, r0, n);
      const at::Tensor qh = qd[b][h].narrow(0, r0, n), kh = kd[b][h / G].narrow(0, 0, Sc),
                       vh = vd[b][h / G].narrow(0, 0, Sc);
      at::Tensor scores = scores_buf.narrow(0, 0, n * Sc).view({n, Sc});
      if (worker) {
        if (b * kvH + h / G != packed_kv) {
          worker->pack(kh.data_ptr(), vh.data_ptr());
          packed_kv = b * kvH + h / G;
        }
        worker->scores(scores.data_ptr(), qh.data_ptr(), n);
      } else {
        at::mm_out(scores, qh, kh.t());
      }
      if (scale_scores) scores.mul_(scale);
      if (mask.defined()) {
        scores.add_(mask[mask.size(0) == 1 ? 0 : b][0].narrow(0, r0, n).narrow(1, 0, Sc));
      } else if (causal) {  // the last n keys, [past + r0, Sc), form the block with the hidden ones
        scores.narrow(1, past + r0, n).masked_fill_(upper.narrow(0, 0, n).narrow(1, 0, n),
                                                    -std::numeric_limits<float>::infinity());
      }
      if (!softmax_lastdim_(scores, softmax_scale)) {
        if (softmax_scale != 1.f) scores.mul_(softmax_scale);
        at::_softmax_out(scores, scores, -1, false);
      }
      if (worker) worker->values(o.data_ptr(), scores.data_ptr(), n);
      else at::mm_out(o, scores, vh);
    }
  });
  return out;
}

}  // namespace omni::nn
