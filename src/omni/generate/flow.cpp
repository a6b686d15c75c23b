#include "omni/generate/flow.h"

#include <torch/torch.h>

#include <memory>

#include "omni/core/progress.h"

namespace omni::generate {

std::vector<float> flow_timesteps(int num_timesteps, double shift) {
  auto ts = torch::linspace(1, 0, num_timesteps, torch::kFloat32);
  ts = shift * ts / (1 + (shift - 1) * ts);
  return std::vector<float>(ts.data_ptr<float>(), ts.data_ptr<float>() + ts.numel());
}

at::Tensor euler_flow(at::Tensor x, const std::vector<float>& ts,
                      const std::function<at::Tensor(int, float, const at::Tensor&)>& velocity,
                      const std::string& label) {
  x = x.to(torch::kFloat32);
  const int n = static_cast<int>(ts.size()) - 1;
  std::unique_ptr<Progress> bar;
  if (!label.empty()) bar = std::make_unique<Progress>(label, n, "step");
  for (int i = 0; i < n; ++i) {
    auto v = velocity(i, ts[i], x);
    x = x - v.to(torch::kFloat32) * (ts[i] - ts[i + 1]);  // float32 dt, as timesteps[:-1] - timesteps[1:]
    if (bar) bar->tick();
  }
  if (bar) bar->finish();
  return x;
}

}  // namespace omni::generate
