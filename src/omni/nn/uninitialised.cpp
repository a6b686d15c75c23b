#include "omni/nn/uninitialised.h"

#include "omni/nn/linear.h"

namespace omni::nn {
namespace {
thread_local bool g_uninitialised = false;

torch::ScalarType default_dtype() { return torch::typeMetaToScalarType(torch::get_default_dtype()); }
}  // namespace

UninitialisedBuild::UninitialisedBuild() : prev_(g_uninitialised) { g_uninitialised = true; }
UninitialisedBuild::~UninitialisedBuild() { g_uninitialised = prev_; }
bool uninitialised_build() { return g_uninitialised; }

torch::nn::Linear linear_over_empty(int64_t in, int64_t out, bool bias, torch::ScalarType weight_dtype) {
  // Built at 1 x 1 (its init then touches one weight), then re-pointed at [out, in] storage.
  torch::nn::Linear l(torch::nn::LinearOptions(1, 1).bias(bias));
  torch::NoGradGuard no_grad;
  const bool trainable = c10::isFloatingType(weight_dtype);
  if (!trainable) l->weight.requires_grad_(false);
  l->weight.set_data(torch::empty({out, in}, torch::TensorOptions().dtype(weight_dtype)));
  if (bias) {
    if (!trainable) l->bias.requires_grad_(false);
    l->bias.set_data(torch::empty({out}, l->bias.options()));
  }
  l->options = torch::nn::LinearOptions(in, out).bias(bias);
  return l;
}

torch::nn::Linear default_linear(int64_t in, int64_t out, bool bias) {
  if (!g_uninitialised) return torch::nn::Linear(torch::nn::LinearOptions(in, out).bias(bias));
  return linear_over_empty(in, out, bias, default_dtype());
}

torch::nn::Linear head_linear(int64_t in, int64_t out, bool bias) {
  if (narrow_linear_build() != c10::ScalarType::Undefined) return linear_over_empty(in, out, bias, torch::kBFloat16);
  return default_linear(in, out, bias);
}

torch::nn::Embedding embedding_table(int64_t n, int64_t dim) {
  const bool narrow = narrow_linear_build() != c10::ScalarType::Undefined;
  if (!g_uninitialised && !narrow) return torch::nn::Embedding(n, dim);
  torch::nn::Embedding e(torch::nn::EmbeddingOptions(1, dim));
  torch::NoGradGuard no_grad;
  e->weight.set_data(torch::empty({n, dim}, e->weight.options().dtype(narrow ? torch::kBFloat16 : default_dtype())));
  e->options.num_embeddings(n);
  return e;
}

}  // namespace omni::nn
