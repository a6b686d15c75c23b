// What a caller hands a model, grouped by concern (stable-diffusion.cpp's sample params): how
// to load it, the interleaved input, text sampling, image sampling, and the family's own flags.
// Unset optionals mean "the family's official default for this mode".
#pragma once
#include <c10/core/Device.h>
#include <c10/core/ScalarType.h>

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "omni/generate/interleaved.h"

namespace omni::io {
class Trace;
}

namespace omni::models {

struct LoadOptions {
  std::string path;  // the checkpoint directory
  c10::Device device = c10::kCPU;
  // Compute / weight dtype; unset: float32 on CPU, bfloat16 on CUDA (as the official code runs).
  std::optional<c10::ScalarType> dtype;
  int threads = 0;  // intra-op threads; 0 = set_threads's default
  // omni infer / eval: the model is never trained, so a family may lay its weights out for
  // inference only (fp32 CPU vision towers: nn::store_linear_weights_transposed).
  bool inference_only = false;

  c10::ScalarType resolved_dtype() const {
    return dtype ? *dtype : (device.is_cpu() ? c10::ScalarType::Float : c10::ScalarType::BFloat16);
  }
  // What the model is built and computes in, and the narrower dtype its decoder-layer linears are
  // stored in (Undefined: none): nn::compute_dtype and nn::narrow_linear_dtype, except that a model
  // to be trained computes in the bf16 it asked for (its trainer keeps fp32 master weights).
  c10::ScalarType compute_dtype() const;
  c10::ScalarType narrow_linear_dtype() const;
};

// Sets libtorch's intra-op threads for a run (omni infer / eval / train) and returns the count:
// `threads` when > 0; else OMP_NUM_THREADS when it holds a positive number; else the CPUs this
// process may run on (sched_getaffinity), shared among `local_processes` (LOCAL_WORLD_SIZE under
// omni launch / torchrun), at least 1. Why not libtorch's default: it counts physical cores through
// cpuinfo, which finds 1 on this 2-vCPU VM (lscpu: 2 cores, 1 thread each), so every run used one
// core (a 2048^3 GEMM: 72 GFLOP/s on one thread, 161 on two). More than 1024 threads, from the flag
// or the environment, is an Error.
int set_threads(int threads, int local_processes = 1);

// Throws Error("--dtype fp16", why) for fp16 on the CPU: libtorch's CPU kernels have no fp16
// matmul or convolution (1.13: "addmm_impl_cpu_" not implemented for 'Half'), so every family
// failed after its load with libtorch's message. bf16 is the CPU's half-width dtype.
void check_dtype_on_device(c10::ScalarType dtype, const c10::Device& device);

// omni init: a freshly initialised model for a config.json (no checkpoint to start from).
struct InitOptions {
  std::string config_file;   // the family's config.json
  std::string weights_file;  // model.safetensors to write
  uint64_t seed = 0;         // every draw of the initialisation comes from this
  c10::ScalarType dtype = c10::ScalarType::Float;  // the dtype the weights are stored in
};

// "cpu", "cuda", "cuda:1" -> a device (CUDA checked for availability); "fp32|bf16|fp16" (and the
// torch spellings) -> a dtype. Throw omni::Error naming the flag.
c10::Device parse_device(const std::string& s);
c10::ScalarType parse_dtype(const std::string& s);
std::string dtype_name(c10::ScalarType t);  // "fp32", "bf16", "fp16"
// The CLI's "<family> on <device> in <this>": the loaded model's dtype, "int8", or bf16 with how a
// CPU without bf16 GEMM kernels runs it.
std::string precision_name(const LoadOptions& lo, c10::ScalarType model_dtype);

struct TextSampling {
  std::optional<int> max_new_tokens;  // unset: the family's official default for the mode
  std::optional<double> temperature;  // 0 = greedy
  std::optional<int64_t> top_k;
  std::optional<double> top_p;
};

struct ImageSampling {
  std::optional<int> height, width;
  std::optional<int> steps;  // flow timesteps (steps - 1 model evaluations)
  std::optional<double> timestep_shift;
  std::optional<double> cfg_text_scale, cfg_img_scale;
  std::optional<std::pair<double, double>> cfg_interval;
  std::optional<std::string> cfg_renorm_type;
  std::optional<double> cfg_renorm_min;
  std::string init_noise;  // safetensors file with the draws to inject instead of sampling
};

// Flags a family declares beyond the shared groups (e.g. Janus' --cfg_weight), as given.
class ExtraFlags {
 public:
  void set(const std::string& flag, const std::string& value) { values_[flag] = value; }
  bool has(const std::string& flag) const { return values_.count(flag) != 0; }
  std::string get(const std::string& flag, const std::string& fallback) const;
  double get_double(const std::string& flag, double fallback) const;  // throws naming the flag
  int64_t get_int(const std::string& flag, int64_t fallback) const;
  bool get_bool(const std::string& flag) const { return has(flag) && get(flag, "") != "false"; }

 private:
  std::map<std::string, std::string> values_;
};

struct Request {
  generate::InterleavedInput input;
  TextSampling text;
  ImageSampling image;
  std::optional<uint64_t> seed;  // seeds the request's generator; unset: a fresh logged seed
  ExtraFlags extra;
  io::Trace* trace = nullptr;  // --trace recorder (may be null or disabled)
};

}  // namespace omni::models
