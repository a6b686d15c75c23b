// `omni infer` for Janus / Janus-Pro: understand (VQA, streamed text) and generate (CFG
// text-to-image). Registered as model_type "janus" with alias "multi_modality".
#pragma once
#include "omni/models/registry.h"

namespace omni::models::janus {

int run_understand(const InferOptions& o);
int run_generate(const InferOptions& o);
void register_janus();

// "out.png", 0 -> "out.png"; 1 -> "out_1.png" (the official script's numbering, one file per image).
std::string numbered_output(const std::string& path, int index);

}  // namespace omni::models::janus
