// SenseNova-U1's flow sampling rules (modeling_neo_chat.py: _apply_time_schedule, t2i_generate,
// it2i_generate, interleave_gen). The shared Euler loop (generate/flow.h) steps the image; what is
// U1's own lives here: the schedule from noise (t = 0) to data (t = 1), the velocity from an
// x-prediction, and which branches run and how they combine at each step, with each entry point's
// own rule (they differ, and the official outputs depend on the difference).
#pragma once
#include <torch/torch.h>

#include <string>
#include <utility>
#include <vector>

namespace omni::sensenova_u1 {

// t = linspace(0, 1, steps + 1) in float32, shifted on sigma = 1 - t: sigma' = s sigma / (1 + (s - 1) sigma).
std::vector<float> flow_timesteps(int steps, double shift);

// v = (x_pred - z) / clamp_min(1 - t, t_eps), float32 scalars as the official 0-dim tensors.
torch::Tensor velocity_from_x(const torch::Tensor& x_pred, const torch::Tensor& z, float t, double t_eps);

// Which entry point's guidance rule applies.
enum class GuidanceRule {
  TextToImage,  // t2i_generate: CFG iff lo <= t <= hi and text scale > 1; cfg_zero_star allowed
  Edit,         // it2i_generate: CFG iff (lo < t < hi) or lo == 0; norm iff a scale > 1 and CFG on
  Interleave,   // interleave_gen: as Edit, but the norm applies whenever text scale > 1 (Python
                // precedence of `a > 1 or b > 1 and use_cfg`)
};

struct GuidanceOptions {
  GuidanceRule rule = GuidanceRule::TextToImage;
  double text_scale = 4.0, img_scale = 1.0;
  std::pair<double, double> interval{0.0, 1.0};
  std::string norm = "none";  // none | global | channel | cfg_zero_star (t2i only)
  // Which branches exist: cond always; "image" = the images-only condition (edit, interleave),
  // "uncond" = nothing but the empty turn.
  bool needs_image_branch() const;
  bool needs_uncond_branch() const;
  void validate() const;  // throws omni::Error naming the flag
};

// The branch velocities a step computes ([B, T, D]; undefined when not run) and what they make.
struct StepVelocities {
  torch::Tensor cond, image, uncond;
};

// Whether step `i` at time t runs guidance (the rule's interval test; t compared in float32 as the
// official 0-dim tensor is).
bool guidance_active(const GuidanceOptions& g, float t);
// Branches step i needs besides cond: {image, uncond}.
std::pair<bool, bool> branches_for_step(const GuidanceOptions& g, float t);
// The guided velocity from the branches the step ran (step = index for cfg_zero_star's zeroed first step).
torch::Tensor guide(const GuidanceOptions& g, const StepVelocities& v, float t, int step);

}  // namespace omni::sensenova_u1
