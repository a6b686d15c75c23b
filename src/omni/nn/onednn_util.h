// What the oneDNN users of src/omni/nn share (attention_tiles_onednn.cpp, linear_onednn.cpp).
// Include only under OMNI_HAVE_ONEDNN. Internal to src/omni/nn.
#pragma once
#include <oneapi/dnnl/dnnl.hpp>

#include <ATen/ATen.h>

namespace omni::nn::onednn {

inline dnnl::memory::data_type data_type(at::ScalarType st) {
  return st == at::kFloat ? dnnl::memory::data_type::f32 : dnnl::memory::data_type::bf16;
}

// The one process-wide CPU engine (oneDNN engines are thread-safe; creating one costs a query of
// the CPU).
inline const dnnl::engine& cpu_engine() {
  static const dnnl::engine eng(dnnl::engine::kind::cpu, 0);
  return eng;
}

// A matmul primitive descriptor in either API: oneDNN 2.x builds it from an op descriptor, 3.x
// (a newer libtorch's) directly.
inline dnnl::matmul::primitive_desc matmul_pd(const dnnl::memory::desc& a, const dnnl::memory::desc& b,
                                              const dnnl::memory::desc& bias, const dnnl::memory::desc& c,
                                              const dnnl::primitive_attr& attr) {
#if DNNL_VERSION_MAJOR >= 3
  return dnnl::matmul::primitive_desc(cpu_engine(), a, b, bias, c, attr);
#else
  return dnnl::matmul::primitive_desc(dnnl::matmul::desc(a, b, bias, c), attr, cpu_engine());
#endif
}
inline dnnl::matmul::primitive_desc matmul_pd(const dnnl::memory::desc& a, const dnnl::memory::desc& b,
                                              const dnnl::memory::desc& c, const dnnl::primitive_attr& attr) {
#if DNNL_VERSION_MAJOR >= 3
  return dnnl::matmul::primitive_desc(cpu_engine(), a, b, c, attr);
#else
  return dnnl::matmul::primitive_desc(dnnl::matmul::desc(a, b, c), attr, cpu_engine());
#endif
}

}  // namespace omni::nn::onednn
