#include "omni/models/sensenova_u1/guidance.h"

#include "omni/core/error.h"
#include "omni/generate/cfg.h"

namespace omni::sensenova_u1 {

std::vector<float> flow_timesteps(int steps, double shift) {
  auto t = torch::linspace(0.0, 1.0, steps + 1, torch::kFloat32);
  auto sigma = 1 - t;
  sigma = shift * sigma / (1 + (shift - 1) * sigma);
  auto ts = (1 - sigma).contiguous();
  return std::vector<float>(ts.data_ptr<float>(), ts.data_ptr<float>() + ts.numel());
}

torch::Tensor velocity_from_x(const torch::Tensor& x_pred, const torch::Tensor& z, float t, double t_eps) {
  auto denom = (1 - torch::scalar_tensor(t, torch::kFloat32)).clamp_min(t_eps).to(x_pred.device());
  return (x_pred - z) / denom;
}

bool GuidanceOptions::needs_image_branch() const {
  if (rule == GuidanceRule::TextToImage) return false;
  const bool needs_cfg = !(text_scale == 1 && img_scale == 1);
  return needs_cfg && (img_scale == 1 || text_scale != img_scale);
}

bool GuidanceOptions::needs_uncond_branch() const {
  if (rule == GuidanceRule::TextToImage) return text_scale > 1;
  const bool needs_cfg = !(text_scale == 1 && img_scale == 1);
  return needs_cfg && img_scale != 1;
}

void GuidanceOptions::validate() const {
  const bool t2i = rule == GuidanceRule::TextToImage;
  check(norm == "none" || norm == "global" || norm == "channel" || (t2i && norm == "cfg_zero_star"), "--cfg_norm",
        std::string("expects none, global, channel") + (t2i ? " or cfg_zero_star" : " (cfg_zero_star is text-to-image only)") +
            " (got \"" + norm + "\")");
  check(text_scale >= 0, "--cfg_text_scale", "must be >= 0");
  check(img_scale >= 0, "--cfg_img_scale", "must be >= 0");
  check(interval.first <= interval.second, "--cfg_interval", "expects A <= B");
}

bool guidance_active(const GuidanceOptions& g, float t) {
  const float lo = static_cast<float>(g.interval.first), hi = static_cast<float>(g.interval.second);
  if (g.rule == GuidanceRule::TextToImage) return t >= lo && t <= hi && g.text_scale > 1;
  return (t > lo && t < hi) || g.interval.first == 0;
}

std::pair<bool, bool> branches_for_step(const GuidanceOptions& g, float t) {
  if (!guidance_active(g, t)) return {false, false};
  if (g.rule == GuidanceRule::TextToImage) return {false, true};
  const double cs = g.text_scale, is = g.img_scale;
  if (cs == 1 && is == 1) return {false, false};
  if (is == 1) return {true, false};
  if (cs == is) return {false, true};
  return {true, true};
}

namespace {
torch::Tensor renorm(const torch::Tensor& v, const torch::Tensor& cond, const std::string& norm) {
  if (norm == "global") {
    auto nc = torch::norm(cond, 2, {1, 2}, true), nv = torch::norm(v, 2, {1, 2}, true);
    return v * (nc / (nv + 1e-8)).clamp(0, 1.0);
  }
  if (norm == "channel") {
    auto nc = torch::norm(cond, 2, {-1}, true), nv = torch::norm(v, 2, {-1}, true);
    return v * (nc / (nv + 1e-8)).clamp(0, 1.0);
  }
  return v;
}
}  // namespace

torch::Tensor guide(const GuidanceOptions& g, const StepVelocities& v, float t, int step) {
  const bool active = guidance_active(g, t);
  const double cs = g.text_scale, is = g.img_scale;
  if (g.rule == GuidanceRule::TextToImage) {
    if (!active) return v.cond;
    if (g.norm == "cfg_zero_star") {
      if (step <= 0) return v.cond * 0.;
      const int64_t B = v.cond.size(0);
      auto pos = v.cond.reshape({B, -1}).to(torch::kFloat32), neg = v.uncond.reshape({B, -1}).to(torch::kFloat32);
      auto alpha = (pos * neg).sum(1, true) / ((neg * neg).sum(1, true) + 1e-8);
      std::vector<int64_t> shape(v.cond.dim(), 1);
      shape[0] = B;
      alpha = alpha.view(shape).to(v.cond.scalar_type());
      return v.uncond * alpha + cs * (v.cond - v.uncond * alpha);
    }
    return renorm(generate::cfg_combine(v.cond, v.uncond, cs), v.cond, g.norm);
  }
  torch::Tensor out;
  if (!active || (cs == 1 && is == 1)) {
    out = v.cond;
  } else if (is == 1) {
    out = generate::cfg_combine(v.cond, v.image, cs);
  } else if (cs == is) {
    out = generate::cfg_combine(v.cond, v.uncond, cs);
  } else {
    out = v.uncond + cs * (v.cond - v.image) + is * (v.image - v.uncond);
  }
  const bool apply_norm =
      g.rule == GuidanceRule::Edit ? ((cs > 1 || is > 1) && active) : (cs > 1 || (is > 1 && active));
  return apply_norm ? renorm(out, v.cond, g.norm) : out;
}

}  // namespace omni::sensenova_u1
