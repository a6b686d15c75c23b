#include "omni/nn/cpu_bf16.h"

#include <ATen/Context.h>
#include <ATen/Config.h>

#include <cstdlib>
#include <cstring>

namespace omni::nn {

bool cpu_has_bf16_gemm() {
  static const bool has = [] {
    const char* off = std::getenv("OMNI_NO_BF16_GEMM");
    if (off && *off && std::strcmp(off, "0") != 0) return false;
#if AT_MKLDNN_ENABLED()
    __builtin_cpu_init();
    return at::globalContext().userEnabledMkldnn() && __builtin_cpu_supports("avx512bw") &&
           __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq");
#else
    return false;
#endif
  }();
  return has;
}

}  // namespace omni::nn
