// Learning-rate schedules (the shapes of transformers' get_*_schedule_with_warmup, with a floor):
// linear warmup from 0 over `warmup_steps`, then constant, cosine or linear decay to lr_min at
// the last step. torch-free.
#pragma once
#include <cstdint>

#include "omni/train/config.h"

namespace omni::train {

// The learning rate of optimizer step `step` (0-based) of `total_steps`.
double lr_at(const TrainConfig& t, int64_t step, int64_t total_steps);

}  // namespace omni::train
