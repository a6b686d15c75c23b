// Janus / Janus-Pro as a family of the model interface: understand (VQA, streamed text) and
// generate (CFG text-to-image). model_type "janus", aliases "multi_modality" and "janus_pro".
#pragma once
#include "omni/models/model.h"

namespace omni::models::janus {

Family janus_family();

}  // namespace omni::models::janus
