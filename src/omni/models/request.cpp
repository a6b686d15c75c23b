#include "omni/models/request.h"

#include <torch/torch.h>

#include <sched.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>

#include "omni/core/error.h"
#include "omni/nn/linear.h"

namespace omni::models {

c10::Device parse_device(const std::string& s) {
  c10::Device d = c10::kCPU;
  try {
    d = c10::Device(s);
  } catch (const std::exception&) {
    throw Error("--device " + s, "expected cpu, cuda or cuda:N");
  }
  if (d.is_cuda()) {
    if (!torch::cuda::is_available())
      throw Error("--device " + s, "this build's libtorch has no CUDA, or no GPU is visible");
    if (d.has_index() && d.index() >= static_cast<int>(torch::cuda::device_count()))
      throw Error("--device " + s, "only " + std::to_string(torch::cuda::device_count()) + " GPU(s) visible");
  } else if (!d.is_cpu()) {
    throw Error("--device " + s, "expected cpu, cuda or cuda:N");
  }
  return d;
}

c10::ScalarType parse_dtype(const std::string& s) {
  if (s == "fp32" || s == "float32" || s == "float") return c10::ScalarType::Float;
  if (s == "bf16" || s == "bfloat16") return c10::ScalarType::BFloat16;
  if (s == "fp16" || s == "float16" || s == "half") return c10::ScalarType::Half;
  if (s == "int8") return c10::ScalarType::Char;  // int8 decoder-layer weights, fp32 compute (nn/linear.h)
  throw Error("--dtype " + s, "expected fp32, bf16, fp16 or int8");
}

c10::ScalarType LoadOptions::narrow_linear_dtype() const {
  const auto t = resolved_dtype();
  return nn::is_int8(t) || inference_only ? nn::narrow_linear_dtype(t, device) : c10::ScalarType::Undefined;
}
c10::ScalarType LoadOptions::compute_dtype() const {
  return narrow_linear_dtype() == c10::ScalarType::Undefined ? resolved_dtype() : c10::ScalarType::Float;
}

int set_threads(int threads, int local_processes) {
  int n = threads;
  const char* env = std::getenv("OMP_NUM_THREADS");
  if (n <= 0 && env && std::atoi(env) > 0) n = std::atoi(env);
  // Beyond this a run only slows down, and starting 10^5 threads took minutes that looked like a
  // hang.
  constexpr int kMaxThreads = 1024;
  if (n > kMaxThreads)
    throw Error(threads > 0 ? "--threads " + std::to_string(threads) : "OMP_NUM_THREADS=" + std::string(env),
                "at most " + std::to_string(kMaxThreads) + " threads");
  if (n <= 0) {
    cpu_set_t set;
    CPU_ZERO(&set);
    const int cpus = sched_getaffinity(0, sizeof set, &set) == 0 ? CPU_COUNT(&set) : 1;
    n = std::max(1, cpus / std::max(1, local_processes));
  }
  torch::set_num_threads(n);
  return n;
}

void check_dtype_on_device(c10::ScalarType dtype, const c10::Device& device) {
  if (dtype == c10::ScalarType::Half && device.is_cpu())
    throw Error("--dtype fp16", "not on the CPU: libtorch's CPU kernels have no fp16 matmul or convolution (use bf16 "
                                "on the CPU; fp16 runs on a GPU)");
}

std::string dtype_name(c10::ScalarType t) {
  switch (t) {
    case c10::ScalarType::Float: return "fp32";
    case c10::ScalarType::BFloat16: return "bf16";
    case c10::ScalarType::Half: return "fp16";
    case c10::ScalarType::Char: return "int8";
    default: return c10::toString(t);
  }
}

std::string precision_name(const LoadOptions& lo, c10::ScalarType model_dtype) {
  const auto narrow = lo.narrow_linear_dtype();
  if (narrow == c10::ScalarType::BFloat16) return "bf16 (bf16 weights, fp32 compute: no bf16 GEMM kernels on this CPU)";
  return dtype_name(narrow == c10::ScalarType::Char ? narrow : model_dtype);
}

std::string ExtraFlags::get(const std::string& flag, const std::string& fallback) const {
  auto it = values_.find(flag);
  return it == values_.end() ? fallback : it->second;
}

double ExtraFlags::get_double(const std::string& flag, double fallback) const {
  if (!has(flag)) return fallback;
  const std::string v = get(flag, "");
  char* end = nullptr;
  const double d = std::strtod(v.c_str(), &end);
  if (v.empty() || *end != '\0' || !std::isfinite(d)) throw Error(flag + " '" + v + "'", "expected a finite number");
  return d;
}

int64_t ExtraFlags::get_int(const std::string& flag, int64_t fallback) const {
  if (!has(flag)) return fallback;
  const std::string v = get(flag, "");
  char* end = nullptr;
  const long long i = std::strtoll(v.c_str(), &end, 10);
  if (v.empty() || *end != '\0') throw Error(flag + " '" + v + "'", "expected an integer");
  return i;
}

}  // namespace omni::models
