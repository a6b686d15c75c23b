// SenseNova-U1 (`neo_chat`, CLI name "u1") as a family of the model interface: understand
// (streamed text), generate (text-to-image, --think), edit (images + instruction -> image, three
// CFG branches), interleave (text with images drawn where the model opens <img>), and training
// (text CE + the pixel-space flow-matching loss).
#pragma once
#include "omni/models/model.h"

namespace omni::models::sensenova_u1 {

Family u1_family();

}  // namespace omni::models::sensenova_u1
