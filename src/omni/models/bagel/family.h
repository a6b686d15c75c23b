// BAGEL and ThinkMorph as families of the model interface: understand (streamed text), generate
// (text-to-image), edit (image + instruction -> image), --think (plan first); ThinkMorph's
// understand with an image runs its interleaved reasoning loop. Which of the two a directory
// holds is read from what the checkpoint says (config.h: detect_variant).
#pragma once
#include "omni/models/model.h"

namespace omni::models::bagel {

Family bagel_family();
Family thinkmorph_family();

}  // namespace omni::models::bagel
