#include "omni/train/schedule.h"

#include <algorithm>
#include <cmath>

namespace omni::train {

double lr_at(const TrainConfig& t, int64_t step, int64_t total_steps) {
  if (step < t.warmup_steps) return t.lr * static_cast<double>(step) / static_cast<double>(std::max<int64_t>(1, t.warmup_steps));
  if (t.lr_scheduler == "constant") return t.lr;
  const double span = static_cast<double>(std::max<int64_t>(1, total_steps - t.warmup_steps));
  const double progress = std::min(1.0, static_cast<double>(step - t.warmup_steps) / span);
  const double factor = t.lr_scheduler == "cosine" ? 0.5 * (1.0 + std::cos(M_PI * progress)) : 1.0 - progress;
  return t.lr_min + (t.lr - t.lr_min) * factor;
}

}  // namespace omni::train
