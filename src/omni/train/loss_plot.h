// output_dir/loss.png at the end of a run: the loss terms over the steps (loss black, ce blue,
// gen orange), a y axis from 0 with its top value printed, the step count at the right. No
// plotting library: a few lines into an RGB image written with io::write_png. torch-free.
#pragma once
#include <string>
#include <vector>

#include "omni/train/metrics.h"

namespace omni::train {

void write_loss_plot(const std::string& path, const std::vector<StepMetrics>& history);

}  // namespace omni::train
