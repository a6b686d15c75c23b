#include "omni/dist/process_group.h"

#ifndef USE_C10D_GLOO
#define USE_C10D_GLOO 1  // the Gloo declarations are behind this switch in libtorch's headers
#endif
#include <torch/csrc/distributed/c10d/PrefixStore.hpp>
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>
#ifdef OMNI_WITH_NCCL  // a CUDA libtorch with NCCL (CMakeLists.txt: OMNI_NCCL); it defines USE_C10D_NCCL
#include <torch/csrc/distributed/c10d/ProcessGroupNCCL.hpp>
#endif
#include <torch/torch.h>
#include <torch/version.h>

#include <fcntl.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <algorithm>
#include <map>

#include "omni/core/error.h"

namespace omni::dist {
namespace {
// The object the collectives are called on. libtorch 2.x made the per-backend classes
// (ProcessGroupGloo, ProcessGroupNCCL) subclasses of c10d::Backend, which a c10d::ProcessGroup
// wraps; in 1.13 they are ProcessGroups themselves. The calls used here are the same on both.
#if TORCH_VERSION_MAJOR >= 2
using Collectives = c10d::Backend;
#else
using Collectives = c10d::ProcessGroup;
#endif

int env_int(const char* name, int fallback, int lo, int hi) {
  const char* v = std::getenv(name);
  if (!v || !*v) return fallback;
  char* end = nullptr;
  const long x = std::strtol(v, &end, 10);
  if (*end != '\0' || x < lo || x > hi)
    throw Error(name, std::string("must be an integer in [") + std::to_string(lo) + ", " + std::to_string(hi) + "], got \"" + v + "\"");
  return static_cast<int>(x);
}
// c10d logs socket retries and failures through glog straight to stderr; the rendezvous's outcome
// reaches the user as one error line instead, so stderr is muted while it runs.
class MutedStderr {
 public:
  MutedStderr() {
    std::fflush(stderr);
    saved_ = dup(STDERR_FILENO);
    const int null = open("/dev/null", O_WRONLY);
    if (saved_ >= 0 && null >= 0) dup2(null, STDERR_FILENO);
    if (null >= 0) close(null);
  }
  ~MutedStderr() {
    if (saved_ < 0) return;
    dup2(saved_, STDERR_FILENO);
    close(saved_);
  }

 private:
  int saved_ = -1;
};

void check_divisible(int64_t n, int size) {
  if (n % size != 0)
    throw Error("reduce_scatter", std::to_string(n) + " elements do not split into " + std::to_string(size) + " equal parts");
}

// The first line of a c10d / Gloo exception (they carry C++ backtraces after it).
std::string first_line(const std::string& s) {
  const auto nl = s.find('\n');
  return nl == std::string::npos ? s : s.substr(0, nl);
}
}  // namespace

WorldEnv WorldEnv::from_env() {
  WorldEnv e;
  e.world = env_int("WORLD_SIZE", 1, 1, 1 << 20);
  e.rank = env_int("RANK", 0, 0, e.world - 1);
  e.local_world = env_int("LOCAL_WORLD_SIZE", e.world, 1, e.world);
  e.local_rank = env_int("LOCAL_RANK", e.rank % e.local_world, 0, e.local_world - 1);
  if (const char* a = std::getenv("MASTER_ADDR"); a && *a) e.master_addr = a;
  e.master_port = env_int("MASTER_PORT", e.master_port, 1, 65535);
  return e;
}

struct ProcessGroup::Impl {
  c10::intrusive_ptr<c10d::Store> store;
  c10::intrusive_ptr<Collectives> pg;
  bool nccl = false;
  c10::Device device{c10::kCPU};  // where the collectives' own tensors live (NCCL: this process's GPU)
  std::string host;               // the interface Gloo binds
  std::chrono::milliseconds timeout{0};
  // A Gloo or NCCL process group over `store` (an error line naming `where` if it cannot be made).
  c10::intrusive_ptr<Collectives> make(int rank, int size, const std::string& where) const {
    const std::string name = nccl ? "nccl" : "gloo";
    try {
#ifdef OMNI_WITH_NCCL
      if (nccl) {
        // A peer that dies mid-collective makes the others fail after `timeout` instead of
        // waiting forever (the variable's name before and after libtorch 2.2; a user's value wins).
        setenv("TORCH_NCCL_ASYNC_ERROR_HANDLING", "1", 0);
        setenv("NCCL_ASYNC_ERROR_HANDLING", "1", 0);
        auto opts = c10d::ProcessGroupNCCL::Options::create();
        opts->timeout = timeout;
        return c10::make_intrusive<c10d::ProcessGroupNCCL>(store, rank, size, opts);
      }
#endif
      auto opts = c10d::ProcessGroupGloo::Options::create(timeout);
      opts->devices.push_back(c10d::ProcessGroupGloo::createDeviceForHostname(host));
      return c10::make_intrusive<c10d::ProcessGroupGloo>(store, rank, size, opts);
    } catch (const std::exception& e) {
      throw Error("process group (" + name + ") at " + where, first_line(e.what()));
    }
  }
  double seconds = 0;  // waited in collectives
  bool native_reduce_scatter = true;  // until the backend refuses it
  static Error failed(const char* what, const std::exception& e) {
    return Error(std::string("distributed ") + what, first_line(e.what()) + " (a peer process failed or timed out)");
  }
  c10::intrusive_ptr<c10d::Work> start(const char* what, const std::function<c10::intrusive_ptr<c10d::Work>()>& op) {
    try {
      return op();
    } catch (const std::exception& e) {
      throw failed(what, e);
    }
  }
  void wait(const char* what, const c10::intrusive_ptr<c10d::Work>& work) {
    const auto t0 = std::chrono::steady_clock::now();
    try {
      work->wait();
    } catch (const std::exception& e) {
      throw failed(what, e);
    }
    seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  }
  void run(const char* what, const std::function<c10::intrusive_ptr<c10d::Work>()>& op) { wait(what, start(what, op)); }
  // One all-reduce of `values` as float64.
  std::vector<double> reduce_values(const std::vector<double>& values, c10d::ReduceOp op) {
    std::vector<at::Tensor> t{torch::tensor(values, torch::kFloat64).to(device)};
    c10d::AllreduceOptions o;
    o.reduceOp = op;
    run("all_reduce", [&] { return pg->allreduce(t, o); });
    auto c = t[0].cpu().contiguous();
    return {c.data_ptr<double>(), c.data_ptr<double>() + c.numel()};
  }
};

ProcessGroup::~ProcessGroup() = default;

std::unique_ptr<ProcessGroup> ProcessGroup::init(const WorldEnv& env, c10::Device device, const std::string& backend,
                                                 std::chrono::milliseconds timeout) {
  std::string b = backend == "auto" ? (device.is_cuda() ? "nccl" : "gloo") : backend;
  if (b != "gloo" && b != "nccl") throw Error("train.dist_backend", "must be auto, gloo or nccl (got \"" + backend + "\")");
#ifdef OMNI_WITH_NCCL
  if (b == "nccl" && !device.is_cuda())
    throw Error("train.dist_backend", "nccl runs on CUDA devices (train.device is " + device.str() + "); use gloo");
#else
  if (b == "nccl")
    throw Error("train.dist_backend", device.is_cuda() ? "this build has no NCCL (CMake found no nccl.h; OMNI_NCCL); use gloo"
                                                       : "nccl is not built into this libtorch (CPU build); use gloo");
#endif
  std::unique_ptr<ProcessGroup> g(new ProcessGroup());
  g->impl_ = std::make_unique<Impl>();
  g->impl_->nccl = b == "nccl";
  g->impl_->device = b == "nccl" ? device : c10::Device(c10::kCPU);
  g->rank_ = env.rank;
  g->size_ = env.world;
  const std::string where = env.master_addr + ":" + std::to_string(env.master_port);
  MutedStderr quiet;
  try {
    c10d::TCPStoreOptions so;
    so.port = static_cast<std::uint16_t>(env.master_port);
    so.isServer = env.rank == 0;
    so.numWorkers = static_cast<std::size_t>(env.world);
    so.waitWorkers = true;
    so.timeout = timeout;
    g->impl_->store = c10::make_intrusive<c10d::TCPStore>(env.master_addr, so);
  } catch (const std::exception& e) {
    throw Error("rendezvous at " + where,
                first_line(e.what()) + (env.rank == 0 ? " (is the port in use?)" : " (is the master reachable?)"));
  }
  g->impl_->host = env.master_addr == "localhost" ? "127.0.0.1" : env.master_addr;
  g->impl_->timeout = timeout;
  g->impl_->pg = g->impl_->make(env.rank, env.world, where);
  return g;
}

std::unique_ptr<ProcessGroup> ProcessGroup::subgroup(const std::vector<int>& ranks, const std::string& name) {
  const auto me = std::find(ranks.begin(), ranks.end(), rank_);
  if (me == ranks.end()) throw Error("process group " + name, "this process is not a member");
  std::unique_ptr<ProcessGroup> g(new ProcessGroup());
  g->impl_ = std::make_unique<Impl>();
  g->rank_ = static_cast<int>(me - ranks.begin());
  g->size_ = static_cast<int>(ranks.size());
  g->impl_->host = impl_->host;
  g->impl_->timeout = impl_->timeout;
  g->impl_->nccl = impl_->nccl;
  g->impl_->device = impl_->device;
  if (g->size_ == 1) return g;  // a group of one needs no connections
  MutedStderr quiet;
  g->impl_->store = c10::make_intrusive<c10d::PrefixStore>("group/" + name, impl_->store);
  g->impl_->pg = g->impl_->make(g->rank_, g->size_, name);
  return g;
}

at::Tensor ProcessGroup::all_to_all(const at::Tensor& x) {
  if (x.dim() < 1 || x.size(0) != size_)
    throw Error("all_to_all", "expects one chunk per process along the first dimension");
  if (size_ == 1) return x.clone();
  // Gloo in libtorch 1.13 does not take bf16; the exchange moves bytes, so bf16 travels as fp16 bits.
  if (x.scalar_type() == c10::ScalarType::BFloat16) return all_to_all(x.view(torch::kHalf)).view(torch::kBFloat16);
  auto in = x.contiguous();
  auto out = torch::empty_like(in);
  std::vector<int64_t> equal;  // empty split sizes: equal chunks
  impl_->run("all_to_all", [&] { return impl_->pg->alltoall_base(out, in, equal, equal); });
  return out;
}

void ProcessGroup::all_reduce_sum(std::vector<at::Tensor>& tensors) {
  if (size_ == 1 || tensors.empty()) return;
  std::map<c10::ScalarType, std::vector<size_t>> by_dtype;
  for (size_t i = 0; i < tensors.size(); ++i) by_dtype[tensors[i].scalar_type()].push_back(i);
  for (auto& [dt, idx] : by_dtype) {
    std::vector<at::Tensor> flat_parts;
    for (size_t i : idx) flat_parts.push_back(tensors[i].reshape(-1));
    std::vector<at::Tensor> flat{torch::cat(flat_parts).to(sum_dtype(dt))};
    impl_->run("all_reduce", [&] { return impl_->pg->allreduce(flat); });
    int64_t off = 0;
    for (size_t i : idx) {
      const int64_t n = tensors[i].numel();
      tensors[i].copy_(flat[0].narrow(0, off, n).view_as(tensors[i]));
      off += n;
    }
  }
}

std::vector<double> ProcessGroup::all_reduce_sum(const std::vector<double>& values) {
  return size_ == 1 ? values : impl_->reduce_values(values, c10d::ReduceOp::SUM);
}

std::vector<double> ProcessGroup::all_reduce_max(const std::vector<double>& values) {
  return size_ == 1 ? values : impl_->reduce_values(values, c10d::ReduceOp::MAX);
}

at::Tensor ProcessGroup::all_gather(const at::Tensor& part) {
  auto in = part.reshape(-1).contiguous();
  if (size_ == 1) return in.clone();
  // Gloo in libtorch 1.13 does not take bf16; a gather moves bytes, so bf16 travels as fp16 bits.
  if (in.scalar_type() == c10::ScalarType::BFloat16) return all_gather(in.view(torch::kHalf)).view(torch::kBFloat16);
  auto out = torch::empty({size_, in.numel()}, in.options());
  std::vector<std::vector<at::Tensor>> outs(1);
  for (int r = 0; r < size_; ++r) outs[0].push_back(out[r]);
  std::vector<at::Tensor> ins{in};
  impl_->run("all_gather", [&] { return impl_->pg->allgather(outs, ins); });
  return out.view(-1);
}

at::Tensor ProcessGroup::reduce_scatter_sum(const at::Tensor& whole) {
  check_divisible(whole.numel(), size_);
  const int64_t n = whole.numel() / size_;
  if (size_ == 1) return whole.reshape(-1).clone();
  auto flat = whole.reshape(-1).contiguous();
  if (impl_->native_reduce_scatter) {  // the backend's own op where it has one (NCCL, newer Gloo)
    std::vector<at::Tensor> out{torch::empty({n}, flat.options())};
    std::vector<std::vector<at::Tensor>> in(1);
    for (int r = 0; r < size_; ++r) in[0].push_back(flat.narrow(0, r * n, n));
    c10::intrusive_ptr<c10d::Work> work;
    try {
      work = impl_->pg->reduce_scatter(out, in);
    } catch (const c10::Error&) {  // refused before any traffic, on every process alike
      impl_->native_reduce_scatter = false;
    }
    if (work) {
      impl_->wait("reduce_scatter", work);
      return out[0];
    }
  }
  // Gloo in libtorch 1.13 has no reduce_scatter: a full all-reduce, then this rank's part (twice
  // the traffic of a native reduce-scatter, the same result).
  std::vector<at::Tensor> t{flat.clone()};
  impl_->run("reduce_scatter", [&] { return impl_->pg->allreduce(t); });
  return t[0].narrow(0, rank_ * n, n).clone();
}

std::function<void()> ProcessGroup::all_reduce_sum_start(at::Tensor& flat) {
  if (size_ == 1) return [] {};
  std::vector<at::Tensor> t{flat};
  auto work = impl_->start("all_reduce", [&] { return impl_->pg->allreduce(t); });
  Impl* impl = impl_.get();
  return [impl, work] { impl->wait("all_reduce", work); };
}

c10::ScalarType sum_dtype(c10::ScalarType t) {
  return t == c10::ScalarType::BFloat16 ? c10::ScalarType::Float : t;
}

double ProcessGroup::seconds_in_collectives() const { return impl_ ? impl_->seconds : 0.0; }

void ProcessGroup::barrier() {
  if (size_ == 1) return;
  // A tiny all-reduce: Gloo's barrier in 1.13 has no timeout of its own.
  all_reduce_sum(std::vector<double>{0.0});
}

}  // namespace omni::dist
