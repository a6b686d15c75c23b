// Ulysses sequence parallelism (DeepSpeed-Ulysses; VeOmni's ulysses_size) for training the
// decoders on long packed sequences. The K processes of a sequence-parallel group train on the
// same sequence, each holding 1/K of its rows through the decoder:
//
//   decoder entry  local_rows: the sequence zero-padded to a multiple of K, this process's rows
//                  (and the same rows of the positions, the token route; the attention mask or
//                  packed layout stays whole, covering the padding: padded_layout).
//   attention      one all-to-all trades rows for heads (every row of H/K query heads and kvH/K
//                  key/value heads), attention runs over the whole sequence, a second all-to-all
//                  trades back (attention.h: AttentionMask::sequence_parallel). Everything else in
//                  a layer works row by row, on the local rows.
//   decoder exit   gather_rows: the whole sequence on every process.
//   losses         a family computes the losses of the positions its process owns (Split::owns)
//                  only, so that summed over the group every loss token counts once. That is why
//                  gather_rows's backward keeps this process's rows of the gradient alone.
//
// The processes of a group must run the same collectives in the same order, also in the
// backward, whatever each one's loss reaches:
//   - an all-to-all whose input needs no gradient (frozen rows) still gets a backward node;
//   - a decoder passes each layer's output through tie_layer(), which makes it depend on the
//     layer's all-to-alls (BAGEL's freeze_und detaches a process's understanding rows after them);
//   - the trainer adds anchor() (zero times the decoder outputs) to every objective, for a process
//     that owns no loss position.
#pragma once
#include <torch/torch.h>

#include <functional>
#include <tuple>
#include <utility>
#include <vector>

namespace omni::nn {

struct PackedLayout;

class SequenceParallel {
 public:
  // The group's collectives (the trainer's are c10d's; tests may use threads).
  struct Collectives {
    int rank = 0, size = 1;
    // x [size, ...] -> y [size, ...], y[j] = process j's x[rank] (c10d alltoall_base, equal splits)
    std::function<at::Tensor(const at::Tensor&)> all_to_all;
    // x (the same shape on every process) -> [size, x...] in rank order
    std::function<at::Tensor(const at::Tensor&)> all_gather;
  };
  explicit SequenceParallel(Collectives c);

  int rank() const { return c_.rank; }
  int size() const { return c_.size; }

  // A sequence of `length` rows split over the group: padded to a multiple of size(), this
  // process's rows [begin, end) of it.
  struct Split {
    int64_t length = 0, padded = 0, begin = 0, end = 0;
    int64_t rows() const { return end - begin; }
    bool owns(int64_t row) const { return row >= begin && row < end && row < length; }
  };
  Split split(int64_t length) const;

  // x with `split.length` rows along `dim` -> this process's rows of it, zero-padded.
  at::Tensor local_rows(const at::Tensor& x, int64_t dim, const Split& s) const;
  // This process's rows along `dim` -> the whole sequence (split.length rows), on every process.
  at::Tensor gather_rows(const at::Tensor& x, int64_t dim, const Split& s) const;
  // Of int64 row indexes into the sequence: which ones this process owns (bool, same shape).
  at::Tensor owned(const at::Tensor& rows, const Split& s) const;

  // q [B, H, t, D], k, v [B, kvH, t, D] on this process's t rows -> every row of this process's
  // H/K and kvH/K heads: [B, H/K, padded, D], [B, kvH/K, padded, D] x 2. Throws omni::Error when
  // K does not divide the head counts.
  std::tuple<at::Tensor, at::Tensor, at::Tensor> rows_to_heads(const at::Tensor& q, const at::Tensor& k,
                                                               const at::Tensor& v);
  // The inverse for the attention output: [B, H/K, padded, D] -> [B, H, t, D].
  at::Tensor heads_to_rows(const at::Tensor& o);

  // A layer's output, made to depend on the all-to-alls run since the last call (adds zero).
  at::Tensor tie_layer(const at::Tensor& y);
  // A decoder's local output (its last layer's), kept for anchor(); anchor() returns zero times
  // the sum of every output recorded since the last call (undefined when none).
  void record_output(const at::Tensor& local);
  at::Tensor anchor();
  // Forward all-to-alls run since the last call (for the trainer's debug log).
  int64_t take_exchange_count() { return std::exchange(exchange_count_, 0); }

 private:
  at::Tensor exchange(const at::Tensor& x);  // the autograd-aware all-to-all
  Collectives c_;
  at::Tensor zero_leaf_;  // joins frozen inputs to the graph, so their all-to-all has a backward
  std::vector<at::Tensor> exchanged_, outputs_;
  int64_t exchange_count_ = 0;
};

// A packed layout over `s.length` rows extended to cover the padding rows [length, padded) as
// one more sample that nothing else sees (a flex padding sample reaching past `length` is cut
// there).
PackedLayout padded_layout(const PackedLayout& layout, const SequenceParallel::Split& s);

}  // namespace omni::nn
