// Classifier-free guidance: uncond + scale * (cond - uncond), the combination every family's
// official code writes (Janus' cfg_weight, BAGEL's text and image scales).
#pragma once
#include <ATen/core/Tensor.h>

namespace omni::generate {

inline at::Tensor cfg_combine(const at::Tensor& cond, const at::Tensor& uncond, double scale) {
  return uncond + scale * (cond - uncond);
}

}  // namespace omni::generate
