#include "omni/io/module_loader_torch.h"

#include <chrono>
#include <cstdint>
#include <map>
#include <set>

#include "omni/core/error.h"
#include "omni/core/log.h"
#include "omni/core/memory.h"
#include "omni/io/dtype_torch.h"
#include "omni/nn/linear.h"

namespace omni::io {
namespace {

bool is_float(torch::ScalarType t) { return c10::isFloatingType(t); }

bool convertible(torch::ScalarType from, torch::ScalarType to) {
  if (is_float(from) || is_float(to)) return is_float(from) && is_float(to);
  if (from == torch::kBool || to == torch::kBool) return from == to;
  return true;  // integer widths may differ (e.g. I32 buffers stored as I64)
}

bool is_scale_name(const std::string& local) {
  static const std::string s = "weight_scale";
  return local == s || (local.size() > s.size() && local.compare(local.size() - s.size() - 1, s.size() + 1, "." + s) == 0);
}

std::string describe(const TensorInfo& i) {
  return std::string(dtype_name(i.dtype)) + " " + shape_str(i.shape);
}

// 2 MiB pages under a large CPU tensor about to be written (omni/core/memory.h: decode streams
// every weight once per token, and the prefetchers stop at each 4 KiB page).
void prefer_huge_pages(const torch::Tensor& t) {
  if (t.device().is_cpu() && t.nbytes() >= (size_t{4} << 20)) omni::prefer_huge_pages(t.data_ptr(), t.nbytes());
}

// The checkpoint tensor `name` copied into `dst` (converted to its dtype), then its mapped pages
// released: the one way load_module and a deferred load read a tensor.
void read_into(torch::Tensor dst, const Checkpoint& ckpt, const std::string& name) {
  prefer_huge_pages(dst);
  dst.copy_(ckpt.get(name));
  ckpt.release(name);  // copied: its mapped pages need not stay resident
}

thread_local DeferredWeights* t_deferred = nullptr;  // the innermost DeferWeights scope's

}  // namespace

DeferWeights::DeferWeights(DeferredWeights& into) : prev_(t_deferred) { t_deferred = &into; }
DeferWeights::~DeferWeights() { t_deferred = prev_; }

void DeferredWeights::load(const torch::Tensor& t) {
  const auto it = entries_.find(t.unsafeGetTensorImpl());
  if (it == entries_.end()) return;
  const Entry e = it->second;
  entries_.erase(it);
  if (e.dst._version() != e.version) return;  // written in place since: that wins
  torch::NoGradGuard no_grad;
  read_into(e.dst, checkpoints_[e.checkpoint], e.name);
}

void DeferredWeights::load_all() {
  while (!entries_.empty()) load(entries_.begin()->second.dst);
}

std::vector<std::pair<std::string, torch::Tensor>> named_state(const torch::nn::Module& module) {
  std::vector<std::pair<std::string, torch::Tensor>> out;
  for (const auto& p : module.named_parameters(true)) out.emplace_back(p.key(), p.value());
  for (const auto& b : module.named_buffers(true)) out.emplace_back(b.key(), b.value());
  return out;
}

LoadReport load_module(torch::nn::Module& module, const Checkpoint& ckpt, const LoadOptions& opts) {
  const auto t0 = std::chrono::steady_clock::now();
  LoadReport rep;
  torch::NoGradGuard no_grad;
  std::set<std::string> used;
  auto state = named_state(module);
  // int8 linears built by nn::decoder_linear: `X.weight` int8 with its `X.weight_scale`, which the
  // checkpoint does not have: the float weight is quantized into both.
  std::map<std::string, torch::Tensor> scales;
  for (auto& [local, t] : state)
    if (is_scale_name(local)) scales.emplace(local, t);
  size_t quantized = 0;
  DeferredWeights* const deferred = t_deferred;
  if (deferred) deferred->checkpoints_.push_back(ckpt);
  for (auto& [local, dst] : state) {
    if (scales.count(local)) continue;  // filled with its weight
    const std::string name = opts.prefix + local;
    if (!ckpt.contains(name)) {
      throw Error(ckpt.label(), "missing tensor '" + name + "' (the model expects " +
                                    std::string(c10::toString(dst.scalar_type())) + " " +
                                    shape_str(dst.sizes().vec()) + ")");
    }
    const TensorInfo& info = ckpt.info(name);
    if (info.shape != dst.sizes().vec())
      throw Error(info.file, "tensor '" + name + "' has shape " + shape_str(info.shape) + ", the model expects " +
                                 shape_str(dst.sizes().vec()));
    const auto scale = scales.find(local + "_scale");
    if (dst.scalar_type() == torch::kChar && scale != scales.end() && is_float(to_torch(info.dtype))) {
      // Straight into the weight: a whole-matrix int8 temporary per linear (68 MB for a 7B MLP
      // matrix, freed between small allocations) fragmented the heap by GiBs over BAGEL-7B-MoT's
      // 392 linears.
      prefer_huge_pages(dst);
      nn::quantize_rows_int8_into(ckpt.get(name), dst, scale->second);
      ckpt.release(name);
      used.insert(name);
      rep.tensors++;
      rep.bytes_read += info.nbytes;
      quantized++;
      continue;
    }
    if (!convertible(to_torch(info.dtype), dst.scalar_type()))
      throw Error(info.file, "tensor '" + name + "' is " + describe(info) + ", the model expects " +
                                 c10::toString(dst.scalar_type()));
    used.insert(name);
    if (deferred && is_float(dst.scalar_type())) {
      deferred->entries_[dst.unsafeGetTensorImpl()] = {dst, deferred->checkpoints_.size() - 1, name, dst._version()};
      rep.tensors++;  // checked, not read: the scope's owner loads it (bytes_read counts what was copied)
      continue;
    }
    read_into(dst, ckpt, name);
    rep.tensors++;
    rep.bytes_read += info.nbytes;
  }
  for (const auto& info : ckpt.tensors()) {
    if (used.count(info.name)) continue;
    if (opts.only_check_prefix && info.name.compare(0, opts.prefix.size(), opts.prefix) != 0) continue;
    if (opts.ignore_unused && opts.ignore_unused(info.name)) {
      rep.ignored++;
      continue;
    }
    throw Error(info.file, "unexpected tensor '" + info.name + "' (" + describe(info) +
                               "): the model has no parameter or buffer of that name");
  }
  if (quantized) log_info("int8: ", quantized, " linear weights quantized at load");
  rep.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return rep;
}

}  // namespace omni::io
