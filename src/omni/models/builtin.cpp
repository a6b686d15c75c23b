// The list of built-in model families. Each family's register function adds its entry.
#include "omni/models/bagel/pipeline.h"
#include "omni/models/janus/pipeline.h"
#include "omni/models/registry.h"

namespace omni::models {

void register_builtin_models() {
  janus::register_janus();
  bagel::register_bagel();
}

}  // namespace omni::models
