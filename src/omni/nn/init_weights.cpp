#include "omni/nn/init_weights.h"

#include <string>

#include "omni/core/strings.h"

namespace omni::nn {

void init_weights_hf_style(torch::nn::Module& module, double initializer_range, at::Generator& gen) {
  torch::NoGradGuard no_grad;
  for (auto& p : module.named_parameters(true)) {
    auto& t = p.value();
    if (t.dim() >= 2)
      t.normal_(0.0, initializer_range, gen);
    else if (ends_with(p.key(), "bias"))
      t.zero_();
    else
      t.fill_(1.0);  // RMSNorm / LayerNorm scales (q_norm, k_norm, input_layernorm, ...)
  }
}

}  // namespace omni::nn
