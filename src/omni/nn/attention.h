// Scaled dot-product attention, the one implementation every layer uses (the Llama decoder, the
// MoT decoder's packed blocks, SigLIP / NaViT encoders, the VQ / FLUX mid-block).
//   q [B, H, Tq, D]; k, v [B, kvH, S, D] with H a multiple of kvH (grouped-query attention:
//   query head h reads kv head h / (H / kvH), without materialising repeated keys)
//   -> [B, H, Tq, D] in q's dtype; softmax in float32.
// On libtorch >= 2.1 the fused at::scaled_dot_product_attention runs where it computes the same
// thing (no grouped heads on the CPU, where repeating the cache would cost more than it saves).
// Otherwise on the CPU, without autograd a few rows over a cache go through attention_rows.h, and
// in inference mode many rows through attention_tiles.h (tiles of query rows, one per thread);
// elsewhere (training, other devices) queries are processed in chunks so the score block stays
// under max_score_bytes (a 1024² FLUX decode would otherwise build a 1 GiB score matrix).
#pragma once
#include <torch/torch.h>

#include <string>
#include <vector>

namespace omni::nn {

class SequenceParallel;

// A packed training sequence's attention structure (BAGEL's PackedDataset, flex-attention path):
// samples are separate documents; inside one, splits in order are "causal" (text), "full" (a
// clean image) or "noise" (a generation target). A query sees the earlier splits of its sample
// except noise ones, and its own split (causally for "causal"); nobody sees into a noise split.
// packed_attention computes that split by split against the keys each may see, so memory grows
// with the sequence, never as a [T, T] mask (bagel::packed_attention_mask is the dense reference).
struct PackedLayout {
  std::vector<int64_t> sample_lens;  // may end beyond the sequence (a flex padding sample)
  std::vector<int64_t> split_lens;
  std::vector<std::string> modes;
};

struct AttentionOptions {
  double scale = 0;     // <= 0: 1 / sqrt(D)
  bool causal = false;  // bottom-right aligned: query i of Tq sees keys [0, S - Tq + i] (a KV cache's past)
  // Additive float mask (0 = attend, -inf or finfo.min = blocked), [Tq, S], [B|1, Tq, S] or
  // [B|1, 1, Tq, S]; used instead of `causal`.
  torch::Tensor mask;
  int64_t max_score_bytes = int64_t{128} << 20;
  const PackedLayout* layout = nullptr;  // instead of mask / causal: packed_attention
  // Training with Ulysses sequence parallelism: q, k, v hold this process's rows; attention runs
  // over the whole (padded) sequence between two all-to-alls (sequence_parallel.h), with `mask`,
  // `layout` or `causal` over the whole sequence.
  SequenceParallel* sequence_parallel = nullptr;
};

// Either a dense additive mask or a packed layout (what a training forward hands its layers),
// and, under sequence parallelism, the group the sequence's rows are split over.
struct AttentionMask {
  AttentionMask() = default;
  AttentionMask(torch::Tensor m) : dense(std::move(m)) {}  // NOLINT: a mask converts implicitly
  AttentionMask(const PackedLayout* l) : layout(l) {}     // NOLINT
  torch::Tensor dense;
  const PackedLayout* layout = nullptr;
  SequenceParallel* sequence_parallel = nullptr;
  // The options' mask fields (scale, causal and the rest as the layer sets them).
  void apply_to(AttentionOptions& o) const {
    o.mask = dense;
    o.layout = layout;
    o.sequence_parallel = sequence_parallel;
  }
};

// Output in q's dtype; k and v may be stored narrower (a bf16 cache under fp32 compute).
torch::Tensor attention(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v,
                        const AttentionOptions& o = {});

// q, k, v over the whole packed sequence [B, H|kvH, T, D] -> [B, H, T, D].
torch::Tensor packed_attention(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v,
                               const PackedLayout& layout, const AttentionOptions& o = {});

}  // namespace omni::nn
