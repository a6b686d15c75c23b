#include "omni/dist/fsdp.h"

#include <torch/csrc/autograd/function.h>
#include <torch/csrc/autograd/functions/utils.h>
#include <torch/torch.h>

#include <cmath>
#include <map>

#include "omni/core/error.h"
#include "omni/core/memory.h"
#include "omni/dist/autograd_node.h"
#include "omni/dist/process_group.h"

namespace omni::dist {
namespace {

// The autograd node of one unit call: its backward gathers the unit again and recomputes it.
struct UnitBackward : torch::autograd::Node {
  ShardedParameters* owner = nullptr;
  int64_t layer = 0;
  at::Tensor input;  // detached: the unit's input, the one activation it keeps
  bool input_grad = false;
  nn::LayerFn fn;
  std::vector<int64_t> out_sizes;
  at::TensorOptions out_options;

  torch::autograd::variable_list apply(torch::autograd::variable_list&& grads) override {
    at::Tensor gy = grads.empty() || !grads[0].defined() ? torch::zeros(out_sizes, out_options) : grads[0];
    return {owner->backward_unit(layer, input, input_grad, fn, gy)};
  }
  void release_variables() override {
    input.reset();
    fn = nullptr;
  }
  std::string name() const override { return "omni::ShardedUnitBackward"; }
};

std::string family_bug(const std::string& what) { return what + " (a family bug: fsdp needs each layer once per pass)"; }

}  // namespace

ShardedParameters::ShardedParameters(ProcessGroup& group, const std::vector<std::pair<std::string, at::Tensor>>& params,
                                     const std::vector<std::string>& unit_prefixes, c10::ScalarType master,
                                     const std::function<void(const at::Tensor&)>& fill)
    : group_(group), units_(unit_prefixes.size()) {
  const int64_t N = group.size();
  std::map<const void*, std::string> seen;
  torch::NoGradGuard ng;
  for (const auto& [name, t] : params) {
    if (auto [it, fresh] = seen.emplace(t.unsafeGetTensorImpl(), name); !fresh)
      throw Error("fsdp", "'" + name + "' and '" + it->second + "' are one tensor (tied weights cannot be sharded yet)");
    Param p;
    p.name = name;
    p.full = t;
    p.shape = t.sizes().vec();
    p.options = t.options();
    p.numel = t.numel();
    p.shard = (p.numel + N - 1) / N;
    if (fill) fill(t);
    p.local = shard_slice(t.detach(), p.shard, group.rank(), group.size()).to(master).clone().requires_grad_(true);
    // The model's copy is dead from here (released below). Its memory goes back to the OS now: the
    // CLI's heap policy (core/memory.h) keeps freed blocks under 256 MiB resident, and the deferred
    // load of the next parameter (or the next gather) does not reuse this one's block.
    if (t.device().is_cpu()) drop_whole_pages(t.data_ptr(), t.nbytes());
    bool in_unit = false;
    for (size_t u = 0; u < unit_prefixes.size() && !in_unit; ++u)
      if (name.rfind(unit_prefixes[u] + ".", 0) == 0) {
        units_[u].push_back(params_.size());
        in_unit = true;
      }
    if (!in_unit) root_.push_back(params_.size());
    params_.push_back(std::move(p));
  }
  for (size_t u = 0; u < units_.size(); ++u)
    if (!units_[u].empty()) sharded_units_.push_back(static_cast<int64_t>(u));
  std::vector<size_t> all(params_.size());
  for (size_t i = 0; i < all.size(); ++i) all[i] = i;
  release(all);
}

ShardedParameters::~ShardedParameters() = default;

std::vector<at::Tensor> ShardedParameters::local_shards() const {
  std::vector<at::Tensor> out;
  for (const auto& p : params_) out.push_back(p.local);
  return out;
}

at::Tensor shard_slice(const at::Tensor& whole, int64_t shard, int rank, int world) {
  auto flat = whole.reshape(-1);
  const int64_t padded = shard * world;
  if (padded > flat.numel()) flat = torch::cat({flat, torch::zeros({padded - flat.numel()}, flat.options())});
  return flat.narrow(0, shard * rank, shard);
}

void ShardedParameters::gather(const std::vector<size_t>& which) {
  if (which.empty()) return;
  torch::NoGradGuard ng;
  std::vector<at::Tensor> parts;
  int64_t S = 0;
  for (size_t i : which) {
    parts.push_back(params_[i].local.detach().to(params_[i].options.dtype()));
    S += params_[i].shard;
  }
  const auto all = group_.all_gather(torch::cat(parts)).view({group_.size(), S});
  int64_t off = 0;
  for (size_t i : which) {
    auto& p = params_[i];
    auto whole = all.narrow(1, off, p.shard).contiguous().view(-1).narrow(0, 0, p.numel).view(p.shape);
    p.full.set_data(whole);
    off += p.shard;
  }
}

void ShardedParameters::release(const std::vector<size_t>& which) {
  for (size_t i : which) params_[i].full.set_data(torch::empty({0}, params_[i].options));
}

void ShardedParameters::reduce(const std::vector<size_t>& which, const std::vector<at::Tensor>& whole_grads) {
  if (which.empty()) return;
  torch::NoGradGuard ng;
  const int64_t N = group_.size();
  std::vector<at::Tensor> cols;  // [N, shard] each: row r = rank r's part
  for (size_t k = 0; k < which.size(); ++k) {
    auto& p = params_[which[k]];
    const auto& g = whole_grads[k];
    at::Tensor flat = g.defined() ? g.detach().reshape(-1).to(p.local.scalar_type())
                                  : torch::zeros({p.numel}, p.local.options());
    if (g.defined()) p.used = true;
    if (N * p.shard > p.numel) flat = torch::cat({flat, torch::zeros({N * p.shard - p.numel}, flat.options())});
    cols.push_back(flat.view({N, p.shard}));
  }
  const auto mine = group_.reduce_scatter_sum(torch::cat(cols, 1).reshape(-1));
  int64_t off = 0;
  for (size_t i : which) {
    auto& p = params_[i];
    auto part = mine.narrow(0, off, p.shard);
    if (p.grad.defined())
      p.grad.add_(part);
    else
      p.grad = part.clone();
    off += p.shard;
  }
}

at::Tensor ShardedParameters::run(int64_t layer, const at::Tensor& h, const nn::LayerFn& fn) {
  if (layer != next_forward_ || layer >= static_cast<int64_t>(units_.size()))
    throw Error("fsdp", family_bug("layer " + std::to_string(layer) + " ran where layer " +
                                   std::to_string(next_forward_) + " was due"));
  ++next_forward_;
  const auto& which = units_[static_cast<size_t>(layer)];
  if (which.empty()) return fn(h);  // a frozen layer: whole on every process
  gather(which);
  at::Tensor y;
  {
    torch::NoGradGuard ng;
    y = fn(h.detach());
    if (y.is_view()) y = y.clone();
  }
  release(which);
  if (!torch::GradMode::is_enabled()) return y;
  auto node = make_node<UnitBackward>();
  node->owner = this;
  node->layer = layer;
  node->input = h.detach();
  node->input_grad = h.requires_grad();
  node->fn = fn;
  node->out_sizes = y.sizes().vec();
  node->out_options = y.options();
  node->set_next_edges(torch::autograd::collect_next_edges(h));
  torch::autograd::set_history(y, node);
  outputs_.push_back(y);
  return y;
}

at::Tensor ShardedParameters::backward_unit(int64_t layer, const at::Tensor& input, bool input_grad,
                                            const nn::LayerFn& fn, const at::Tensor& grad_output) {
  const auto& which = units_[static_cast<size_t>(layer)];
  const int64_t left = static_cast<int64_t>(sharded_units_.size()) - 1 - backwards_;
  const int64_t due = left >= 0 ? sharded_units_[static_cast<size_t>(left)] : -1;
  if (layer != due)
    throw Error("fsdp", family_bug("the backward reached layer " + std::to_string(layer) + " where layer " +
                                   std::to_string(due) + " was due"));
  ++backwards_;
  gather(which);
  std::vector<at::Tensor> grads(which.size());
  at::Tensor input_gradient;
  {
    torch::AutoGradMode on(true);
    auto x = input.detach().requires_grad_(input_grad);
    auto y = fn(x);
    std::vector<at::Tensor> wrt;
    if (input_grad) wrt.push_back(x);
    for (size_t i : which) wrt.push_back(params_[i].full);
    if (y.requires_grad()) {
      auto g = torch::autograd::grad({y}, wrt, {grad_output}, /*retain_graph=*/false, /*create_graph=*/false,
                                     /*allow_unused=*/true);
      size_t k = 0;
      if (input_grad) input_gradient = g[k++];
      for (size_t j = 0; j < which.size(); ++j) grads[j] = g[k++];
    }
  }
  release(which);
  reduce(which, grads);
  if (input_grad && !input_gradient.defined()) input_gradient = torch::zeros_like(input);
  return input_gradient;
}

at::Tensor ShardedParameters::anchor() {
  at::Tensor a;
  for (const auto& y : outputs_) a = a.defined() ? a + y.sum() * 0 : y.sum() * 0;
  return a;
}

void ShardedParameters::end_pass() {
  outputs_.clear();
  if (next_forward_ != static_cast<int64_t>(units_.size()))
    throw Error("fsdp", family_bug("the forward ran " + std::to_string(next_forward_) + " of " +
                                   std::to_string(units_.size()) + " layers"));
  if (backwards_ != static_cast<int64_t>(sharded_units_.size()))
    throw Error("fsdp", family_bug("the backward passed " + std::to_string(backwards_) + " of " +
                                   std::to_string(sharded_units_.size()) + " trained layers"));
  next_forward_ = 0;
  backwards_ = 0;
}

void ShardedParameters::null_pass() {
  for (const auto& u : units_) {
    gather(u);
    release(u);
  }
  for (auto it = units_.rbegin(); it != units_.rend(); ++it) {
    gather(*it);
    release(*it);
    reduce(*it, std::vector<at::Tensor>(it->size()));
  }
}

void ShardedParameters::begin_step() { gather(root_); }

void ShardedParameters::end_step() {
  std::vector<at::Tensor> g;
  for (size_t i : root_) g.push_back(params_[i].full.grad());
  reduce(root_, g);
  for (size_t i : root_) params_[i].full.mutable_grad() = at::Tensor();
  release(root_);
  std::vector<double> used;
  for (const auto& p : params_) used.push_back(p.used ? 1.0 : 0.0);
  used = group_.all_reduce_sum(used);
  for (size_t i = 0; i < params_.size(); ++i) {
    auto& p = params_[i];
    // No process computed one: no gradient at all (AdamW leaves it alone, as in one process).
    p.local.mutable_grad() = used[i] > 0 ? p.grad : at::Tensor();
    p.grad = at::Tensor();
    p.used = false;
  }
}

}  // namespace omni::dist
