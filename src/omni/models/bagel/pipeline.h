// `omni infer` for BAGEL and ThinkMorph: understand (streamed text), generate (text-to-image),
// edit (image + instruction -> image), --think (plan first), and ThinkMorph's interleaved
// reasoning loop. Registered as model types "bagel" and "thinkmorph" with a directory detector
// (ema.safetensors = BAGEL, model.safetensors = ThinkMorph).
#pragma once
#include "omni/models/registry.h"

namespace omni::models::bagel {

void register_bagel();

}  // namespace omni::models::bagel
