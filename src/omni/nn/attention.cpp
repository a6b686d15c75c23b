#include "omni/nn/attention.h"

#include <torch/version.h>

#include <cmath>
#include <limits>

#include "omni/core/error.h"
#include "omni/nn/attention_rows.h"
#include "omni/nn/attention_tiles.h"
#include "omni/nn/cpu_bf16.h"
#include "omni/nn/mask_value.h"
#include "omni/nn/sequence_parallel.h"
#include "omni/nn/softmax_cpu.h"

#if defined(TORCH_VERSION_MAJOR) && (TORCH_VERSION_MAJOR > 2 || (TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR >= 1))
#define OMNI_HAVE_SDPA 1
#endif

namespace omni::nn {

namespace {

constexpr int64_t kMinSkipBlockRows = 128;  // smaller blocks lose more in GEMM speed than they skip
constexpr int64_t kMaxSkipBlocks = 5;

}  // namespace

torch::Tensor attention(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v,
                        const AttentionOptions& o) {
  if (o.sequence_parallel) {  // this process's rows of every head -> every row of its heads, and back
    auto [qh, kh, vh] = o.sequence_parallel->rows_to_heads(q, k, v);
    AttentionOptions whole = o;
    whole.sequence_parallel = nullptr;
    return o.sequence_parallel->heads_to_rows(attention(qh, kh, vh, whole));
  }
  if (o.layout) return packed_attention(q, k, v, *o.layout, o);
  check(q.dim() == 4 && k.dim() == 4 && v.sizes() == k.sizes() && q.size(0) == k.size(0) && q.size(3) == k.size(3),
        "attention", "expects q [B, H, Tq, D] and k, v [B, kvH, S, D]");
  const int64_t B = q.size(0), H = q.size(1), Tq = q.size(2), D = q.size(3);
  const int64_t kvH = k.size(1), S = k.size(2);
  check(kvH > 0 && H % kvH == 0, "attention", "query heads must be a multiple of the key/value heads");
  const int64_t G = H / kvH;
  if (Tq == 0) return torch::empty({B, H, 0, D}, q.options());
  const double scale = o.scale > 0 ? o.scale : 1.0 / std::sqrt(static_cast<double>(D));
  torch::Tensor mask = o.mask;  // -> [B|1, 1, Tq, S]
  if (mask.defined()) {
    if (mask.dim() == 2) mask = mask.unsqueeze(0);
    if (mask.dim() == 3) mask = mask.unsqueeze(1);
    check(mask.dim() == 4 && mask.size(1) == 1 && mask.size(2) == Tq && mask.size(3) == S, "attention mask",
          "expects [Tq, S], [B, Tq, S] or [B, 1, Tq, S] with Tq = " + std::to_string(Tq) + ", S = " + std::to_string(S));
    mask = mask.to(q.device(), q.scalar_type());
  }
  const int64_t past = S - Tq;
  if (!torch::GradMode::is_enabled()) {  // decode steps over a cache: one pass, no copies
    auto rows = attention_rows(q, k, v, scale, o.causal, mask);
    if (rows.defined()) return rows;
  }
  // A cache stored narrower than the compute (bf16 keys and values under fp32 compute: kv_cache.h):
  // the many-row routes widen the prefix, once a call.
  if (k.scalar_type() != q.scalar_type() || v.scalar_type() != q.scalar_type())
    return attention(q, k.to(q.scalar_type()), v.to(q.scalar_type()), o);
  // bf16 on a CPU without bf16 GEMM kernels (cpu_bf16.h): libtorch's generic bf16 matmul there is
  // slower than sgemm and sums in bf16, so q, k and v are widened and the fp32 route runs.
  if (q.scalar_type() == torch::kBFloat16 && q.device().is_cpu() && !cpu_has_bf16_gemm()) {
    return attention(q.to(torch::kFloat32), k.to(torch::kFloat32), v.to(torch::kFloat32), o)
        .to(torch::kBFloat16);
  }
#ifdef OMNI_HAVE_SDPA
  if ((G == 1 || q.is_cuda()) && (!o.causal || mask.defined() || past == 0)) {
    auto kk = G > 1 ? k.repeat_interleave(G, 1) : k;
    auto vv = G > 1 ? v.repeat_interleave(G, 1) : v;
    return at::scaled_dot_product_attention(q, kk, vv, mask.defined() ? c10::optional<at::Tensor>(mask) : c10::nullopt,
                                            0.0, o.causal && !mask.defined(), scale);
  }
#endif
  if (c10::InferenceMode::is_enabled()) {  // many query rows on the CPU: tiles in cache, one per thread
    auto tiles = attention_tiles(q, k, v, scale, o.causal, mask);
    if (tiles.defined()) return tiles;
  }
  // bf16 on the CPU: the scores stay bf16 and one pass computes their softmax in fp32 and rounds
  // once (the values of an fp32 softmax rounded to bf16, but for ~1 element in 16k by one step),
  // instead of three passes (widen, softmax, narrow): in place for inference (softmax_cpu.h),
  // libtorch's bf16 softmax under autograd. The scale goes on q, the smaller tensor; either order
  // rounds twice in bf16 (exact for power-of-4 D). Score blocks are capped at 32 MiB of bf16.
  // NaViT's 16 x 1369 x 1369 attention: 57 -> 35 ms (2 threads).
  const bool bf16_cpu = q.scalar_type() == torch::kBFloat16 && q.device().is_cpu();
  auto qg = (bf16_cpu ? q * scale : q).reshape({B, kvH, G, Tq, D});
  auto kt = k.transpose(2, 3);  // [B, kvH, D, S]
  const int64_t score_bytes = bf16_cpu ? 2 : static_cast<int64_t>(sizeof(float));
  const int64_t max_score_bytes = bf16_cpu ? std::min<int64_t>(o.max_score_bytes, int64_t{32} << 20) : o.max_score_bytes;
  const int64_t row_bytes = B * H * S * score_bytes;
  int64_t rows = std::max<int64_t>(1, std::min<int64_t>(Tq, max_score_bytes / std::max<int64_t>(1, row_bytes)));
  // A causal (or causally masked) prefill in row blocks: each block reads only the keys up to its
  // last row, which skips ~40% of the scores, softmax and P@V work at 5 blocks.
  if ((o.causal || mask.defined()) && Tq >= 2 * kMinSkipBlockRows)
    rows = std::min(rows, std::max(kMinSkipBlockRows, (Tq + kMaxSkipBlocks - 1) / kMaxSkipBlocks));
  torch::Tensor out;
  for (int64_t r0 = 0; r0 < Tq; r0 += rows) {
    const int64_t n = std::min(rows, Tq - r0);
    torch::Tensor mask_c = mask.defined() ? mask.narrow(2, r0, n) : torch::Tensor();  // [B|1, 1, n, S]
    const int64_t Sc = o.causal && !mask.defined() ? past + r0 + n : mask_c.defined() && n < Tq ? keys_seen(mask_c) : S;
    if (Sc < S && mask_c.defined()) mask_c = mask_c.narrow(3, 0, Sc);
    auto qc = (n == Tq ? qg : qg.narrow(3, r0, n)).reshape({B, kvH, G * n, D});
    auto scores = torch::matmul(qc, Sc < S ? kt.narrow(3, 0, Sc) : kt);
    if (!bf16_cpu) scores.mul_(scale);
    scores = scores.view({B, kvH, G, n, Sc});
    if (mask_c.defined()) {
      scores.add_(mask_c.unsqueeze(2));  // [B|1, 1, 1, n, Sc]
    } else if (o.causal && !(n == 1 && r0 + past == S - 1)) {
      const auto li = torch::TensorOptions().dtype(torch::kLong).device(q.device());
      auto qi = torch::arange(r0 + past, r0 + past + n, li).unsqueeze(1);  // key j visible iff j <= past + i
      auto kj = torch::arange(Sc, li).unsqueeze(0);
      scores.masked_fill_(kj > qi, -std::numeric_limits<float>::infinity());
    }
    torch::Tensor probs = scores;  // bf16 inference: in place, one pass (softmax_cpu.h)
    if (!bf16_cpu || scores.requires_grad() || !softmax_lastdim_(probs))
      probs = bf16_cpu ? torch::softmax(scores, -1) : torch::softmax(scores, -1, torch::kFloat32).to(q.scalar_type());
    probs = probs.view({B, kvH, G * n, Sc});
    auto oc = torch::matmul(probs, Sc < S ? v.narrow(2, 0, Sc) : v).view({B, kvH, G, n, D});
    if (n == Tq) return oc.view({B, H, Tq, D});
    if (!out.defined()) out = torch::empty({B, kvH, G, Tq, D}, q.options());
    out.narrow(3, r0, n).copy_(oc);
  }
  return out.view({B, H, Tq, D});
}

torch::Tensor packed_attention(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v,
                               const PackedLayout& layout, const AttentionOptions& o) {
  check(layout.split_lens.size() == layout.modes.size(), "packed attention", "one mode per split");
  const int64_t T = q.size(2);
  AttentionOptions split_opts;
  split_opts.scale = o.scale;
  split_opts.max_score_bytes = o.max_score_bytes;
  std::vector<torch::Tensor> pieces;
  size_t split = 0;
  int64_t start = 0;
  for (const int64_t len : layout.sample_lens) {
    if (start >= T) break;  // a flex padding sample beyond the sequence
    check(start + len <= T, "packed attention", "sample_lens overrun the sequence");
    std::vector<std::pair<int64_t, int64_t>> visible;  // earlier non-noise ranges of this sample
    for (int64_t c = start; c < start + len; ++split) {
      check(split < layout.split_lens.size(), "packed attention", "split_lens do not cover sample_lens");
      const int64_t s = layout.split_lens[split];
      const std::string& mode = layout.modes[split];
      check(mode == "causal" || mode == "full" || mode == "noise", "packed attention",
            "mode must be causal, full or noise (got \"" + mode + "\")");
      std::vector<torch::Tensor> ks, vs;
      for (auto [a, n] : visible) {
        ks.push_back(k.narrow(2, a, n));
        vs.push_back(v.narrow(2, a, n));
      }
      ks.push_back(k.narrow(2, c, s));  // its own split last: bottom-right causal is within-split causal
      vs.push_back(v.narrow(2, c, s));
      split_opts.causal = mode == "causal";
      pieces.push_back(attention(q.narrow(2, c, s), ks.size() == 1 ? ks[0] : torch::cat(ks, 2),
                                 vs.size() == 1 ? vs[0] : torch::cat(vs, 2), split_opts));
      if (mode != "noise") {
        if (!visible.empty() && visible.back().first + visible.back().second == c) visible.back().second += s;
        else visible.emplace_back(c, s);
      }
      c += s;
    }
    start += len;
  }
  check(start >= T, "packed attention", "sample_lens cover less than the sequence");
  return pieces.size() == 1 ? pieces[0] : torch::cat(pieces, 2);
}

}  // namespace omni::nn
