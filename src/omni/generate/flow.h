// Rectified-flow sampling shared by the flow-matching families: BAGEL's shifted timestep schedule
// and the Euler loop x <- x - v(x, t_i) * (t_i - t_{i+1}) over any schedule (BAGEL runs t from
// 1 (noise) to 0, SenseNova-U1 from 0 (noise) to 1: the same update, x + (t_{i+1} - t_i) v).
#pragma once
#include <ATen/core/Tensor.h>

#include <functional>
#include <string>
#include <vector>

namespace omni::generate {

// linspace(1, 0, T) shifted: s t / (1 + (s - 1) t), float32 as the official code; T values.
std::vector<float> flow_timesteps(int num_timesteps, double shift);

// The Euler loop over `timesteps` (T values: T - 1 evaluations). The state stays float32 whatever
// the model's dtype (the official x_t is float32 noise updated with the model's velocity).
// velocity(i, t, x) returns v at step i; the progress bar is labelled `label` when non-empty.
at::Tensor euler_flow(at::Tensor x, const std::vector<float>& timesteps,
                      const std::function<at::Tensor(int i, float t, const at::Tensor& x)>& velocity,
                      const std::string& progress_label = "");

}  // namespace omni::generate
