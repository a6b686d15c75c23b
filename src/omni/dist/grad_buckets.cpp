#include "omni/dist/grad_buckets.h"

#include <torch/csrc/autograd/function.h>
#include <torch/csrc/autograd/function_hook.h>
#include <torch/torch.h>

#include <unordered_set>

#include "omni/core/log.h"
#include "omni/dist/process_group.h"

namespace omni::dist {
namespace {

struct GradDone : torch::autograd::FunctionPostHook {
  GradBuckets* owner;
  size_t param;
  GradDone(GradBuckets* o, size_t p) : owner(o), param(p) {}
  torch::autograd::variable_list operator()(const torch::autograd::variable_list& outputs,
                                            const torch::autograd::variable_list&) override {
    owner->ready(param);
    return outputs;
  }
};

}  // namespace

GradBuckets::GradBuckets(ProcessGroup& group, const std::vector<at::Tensor>& params, int64_t bucket_bytes)
    : group_(group), params_(params), bucket_of_(params.size()) {
  Bucket current;
  int64_t bytes = 0;
  for (size_t k = params.size(); k-- > 0;) {
    const auto& p = params[k];
    const bool other_dtype = !current.params.empty() && sum_dtype(params[current.params.front()].scalar_type()) != sum_dtype(p.scalar_type());
    if (!current.params.empty() && (bytes >= bucket_bytes || other_dtype)) {
      buckets_.push_back(std::move(current));
      current = Bucket();
      bytes = 0;
    }
    bucket_of_[k] = buckets_.size();
    current.params.push_back(k);
    bytes += p.numel() * p.element_size();
  }
  if (!current.params.empty()) buckets_.push_back(std::move(current));
  for (size_t k = 0; k < params.size(); ++k) {
    auto acc = torch::autograd::impl::grad_accumulator(params[k]);
    acc->add_post_hook(std::make_unique<GradDone>(this, k));
    accumulators_.push_back(std::move(acc));
  }
}

GradBuckets::~GradBuckets() = default;

void GradBuckets::arm(const at::Tensor& loss) {
  armed_ = true;
  next_ = 0;
  for (auto& b : buckets_) {
    b.pending = b.params.size();
    b.wait = nullptr;
  }
  if (!loss.defined() || !loss.grad_fn()) return;
  std::unordered_set<const torch::autograd::Node*> seen;
  std::vector<torch::autograd::Node*> todo{loss.grad_fn().get()};
  seen.insert(todo.back());
  while (!todo.empty()) {
    auto* n = todo.back();
    todo.pop_back();
    for (const auto& e : n->next_edges())
      if (e.function && seen.insert(e.function.get()).second) todo.push_back(e.function.get());
  }
  for (size_t k = 0; k < accumulators_.size(); ++k)
    if (!seen.count(accumulators_[k].get())) ready(k);
}

void GradBuckets::ready(size_t param) {
  if (!armed_) return;
  auto& b = buckets_[bucket_of_[param]];
  if (b.pending > 0) --b.pending;
  while (next_ < buckets_.size() && buckets_[next_].pending == 0) start(next_++);
}

void GradBuckets::start(size_t index) {
  auto& b = buckets_[index];
  torch::NoGradGuard ng;
  std::vector<at::Tensor> parts;
  b.had.assign(b.params.size(), false);
  for (size_t j = 0; j < b.params.size(); ++j) {
    const auto& p = params_[b.params[j]];
    const auto dt = sum_dtype(p.scalar_type());
    b.had[j] = p.grad().defined();
    parts.push_back(b.had[j] ? p.grad().detach().reshape(-1).to(dt) : torch::zeros({p.numel()}, p.options().dtype(dt)));
  }
  b.flat = torch::cat(parts);
  b.wait = group_.all_reduce_sum_start(b.flat);
}

void GradBuckets::finish() {
  if (!armed_) arm();  // no backward on this process this step: every bucket from zeros
  armed_ = false;
  log_debug("ddp: ", next_, " of ", buckets_.size(), " gradient buckets started during the backward");
  while (next_ < buckets_.size()) start(next_++);
  std::vector<double> had;
  for (auto& b : buckets_) {
    b.wait();
    for (bool h : b.had) had.push_back(h ? 1.0 : 0.0);
  }
  had = group_.all_reduce_sum(had);
  torch::NoGradGuard ng;
  size_t i = 0;
  for (auto& b : buckets_) {
    int64_t off = 0;
    for (size_t k : b.params) {
      auto& p = params_[k];
      const int64_t n = p.numel();
      auto sum = b.flat.narrow(0, off, n).view(p.sizes());  // a view: the bucket is the storage
      p.mutable_grad() = had[i++] > 0 ? (sum.scalar_type() == p.scalar_type() ? sum : sum.to(p.scalar_type())) : at::Tensor();
      off += n;
    }
    b.flat = at::Tensor();
    b.wait = nullptr;
  }
}

}  // namespace omni::dist
