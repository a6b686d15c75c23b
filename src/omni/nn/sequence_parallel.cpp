#include "omni/nn/sequence_parallel.h"

#include <string>

#include "omni/core/error.h"
#include "omni/nn/attention.h"

namespace omni::nn {
namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;
using Exchange = std::function<at::Tensor(const at::Tensor&)>;

const Exchange& exchange_at(AutogradContext* ctx) {
  return *reinterpret_cast<const Exchange*>(ctx->saved_data["fn"].toInt());
}

// An all-to-all is its own adjoint: process r's chunk j goes to process j's chunk r both ways,
// so the gradient travels back through the same exchange.
struct AllToAll : torch::autograd::Function<AllToAll> {
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& x, int64_t fn) {
    ctx->saved_data["fn"] = fn;
    return exchange_at(ctx)(x.contiguous());
  }
  static variable_list backward(AutogradContext* ctx, variable_list g) {
    return {exchange_at(ctx)(g[0].contiguous()), at::Tensor()};
  }
};

// Rows [rows, ...] of every process -> [size * rows, ...]; the gradient of this process's rows is
// its own part of the gradient (the losses of a row are computed by its owner alone).
struct GatherRows : torch::autograd::Function<GatherRows> {
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& x, int64_t fn, int64_t rank) {
    ctx->saved_data["rank"] = rank;
    ctx->saved_data["rows"] = x.size(0);
    auto all = (*reinterpret_cast<const Exchange*>(fn))(x.contiguous());  // [size, rows, ...]
    auto sizes = x.sizes().vec();
    sizes[0] = all.size(0) * x.size(0);
    return all.reshape(sizes);
  }
  static variable_list backward(AutogradContext* ctx, variable_list g) {
    const int64_t rows = ctx->saved_data["rows"].toInt(), rank = ctx->saved_data["rank"].toInt();
    return {g[0].narrow(0, rank * rows, rows), at::Tensor(), at::Tensor()};
  }
};

}  // namespace

SequenceParallel::SequenceParallel(Collectives c) : c_(std::move(c)) {
  check(c_.size >= 1 && c_.rank >= 0 && c_.rank < c_.size && c_.all_to_all && c_.all_gather, "sequence parallel",
        "needs a rank in [0, size) and both collectives");
  zero_leaf_ = torch::zeros({}).requires_grad_(true);
}

SequenceParallel::Split SequenceParallel::split(int64_t length) const {
  Split s;
  s.length = length;
  const int64_t rows = (length + c_.size - 1) / c_.size;
  s.padded = rows * c_.size;
  s.begin = rows * c_.rank;
  s.end = s.begin + rows;
  return s;
}

at::Tensor SequenceParallel::local_rows(const at::Tensor& x, int64_t dim, const Split& s) const {
  if (dim < 0) dim += x.dim();
  check(x.size(dim) == s.length, "sequence parallel",
        "expected " + std::to_string(s.length) + " rows, got " + std::to_string(x.size(dim)));
  at::Tensor padded = x;
  if (s.padded > s.length) {
    auto sizes = x.sizes().vec();
    sizes[dim] = s.padded - s.length;
    padded = torch::cat({x, torch::zeros(sizes, x.options())}, dim);
  }
  return padded.narrow(dim, s.begin, s.rows());
}

at::Tensor SequenceParallel::gather_rows(const at::Tensor& x, int64_t dim, const Split& s) const {
  if (dim < 0) dim += x.dim();
  check(x.size(dim) == s.rows(), "sequence parallel",
        "expected this process's " + std::to_string(s.rows()) + " rows, got " + std::to_string(x.size(dim)));
  auto first = x.movedim(dim, 0);
  auto all = GatherRows::apply(first, reinterpret_cast<int64_t>(&c_.all_gather), static_cast<int64_t>(c_.rank));
  return all.narrow(0, 0, s.length).movedim(0, dim);
}

at::Tensor SequenceParallel::owned(const at::Tensor& rows, const Split& s) const {
  return (rows >= s.begin) & (rows < std::min(s.end, s.length));
}

at::Tensor SequenceParallel::exchange(const at::Tensor& x) {
  at::Tensor in = x;
  if (at::GradMode::is_enabled() && !in.requires_grad()) in = in + zero_leaf_.to(in.scalar_type());
  ++exchange_count_;
  auto y = AllToAll::apply(in, reinterpret_cast<int64_t>(&c_.all_to_all));
  if (y.requires_grad()) exchanged_.push_back(y);
  return y;
}

at::Tensor SequenceParallel::tie_layer(const at::Tensor& y) {
  at::Tensor out = y;
  for (const auto& e : exchanged_) out = out + (e.sum() * 0).to(y.scalar_type());
  exchanged_.clear();
  return out;
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> SequenceParallel::rows_to_heads(const at::Tensor& q,
                                                                               const at::Tensor& k,
                                                                               const at::Tensor& v) {
  const int64_t K = c_.size, B = q.size(0), H = q.size(1), kvH = k.size(1), t = q.size(2), D = q.size(3);
  if (H % K != 0 || kvH % K != 0)
    throw Error("train.ulysses_size", std::to_string(K) + " does not divide the decoder's " + std::to_string(H) +
                                          " attention heads and " + std::to_string(kvH) + " key/value heads");
  // [B, K, heads/K, t, D] per tensor, joined so one exchange carries all three: chunk j holds
  // head block j of q, k and v
  auto blocks = [&](const at::Tensor& x, int64_t h) { return x.reshape({B, K, h / K, t, D}); };
  auto x = torch::cat({blocks(q, H), blocks(k, kvH), blocks(v, kvH)}, 2).transpose(0, 1);  // [K, B, hl, t, D]
  auto y = exchange(x);                                    // chunk j: process j's rows of my heads
  const int64_t hl = y.size(2);
  auto all = y.permute({1, 2, 0, 3, 4}).reshape({B, hl, K * t, D});  // rows in process order
  return {all.narrow(1, 0, H / K), all.narrow(1, H / K, kvH / K), all.narrow(1, (H + kvH) / K, kvH / K)};
}

at::Tensor SequenceParallel::heads_to_rows(const at::Tensor& o) {
  const int64_t K = c_.size, B = o.size(0), hl = o.size(1), D = o.size(3), t = o.size(2) / K;
  auto x = o.reshape({B, hl, K, t, D}).permute({2, 0, 1, 3, 4});  // chunk j: process j's rows
  auto y = exchange(x);                                           // chunk j: my rows of head block j
  return y.transpose(0, 1).reshape({B, K * hl, t, D});
}

void SequenceParallel::record_output(const at::Tensor& local) {
  if (local.requires_grad()) outputs_.push_back(local);
}

at::Tensor SequenceParallel::anchor() {
  at::Tensor a;
  for (const auto& o : outputs_) {
    auto z = o.sum() * 0;
    a = a.defined() ? a + z : z;
  }
  outputs_.clear();
  exchanged_.clear();
  zero_leaf_.mutable_grad() = at::Tensor();
  return a;
}

PackedLayout padded_layout(const PackedLayout& l, const SequenceParallel::Split& s) {
  PackedLayout out;
  int64_t start = 0;
  size_t split = 0;
  for (const int64_t len : l.sample_lens) {
    if (start >= s.length) break;
    const int64_t keep = std::min(len, s.length - start);
    out.sample_lens.push_back(keep);
    for (int64_t c = 0; c < len; ++split) {
      check(split < l.split_lens.size() && split < l.modes.size(), "packed attention", "split_lens do not cover sample_lens");
      if (c < keep) {
        out.split_lens.push_back(std::min(l.split_lens[split], keep - c));
        out.modes.push_back(l.modes[split]);
      }
      c += l.split_lens[split];
    }
    start += len;
  }
  if (s.padded > s.length) {
    out.sample_lens.push_back(s.padded - s.length);
    out.split_lens.push_back(s.padded - s.length);
    out.modes.push_back("full");
  }
  return out;
}

}  // namespace omni::nn
