// The list of built-in model families. Each family's register function adds its entry.
#include "omni/models/registry.h"

namespace omni::models {

void register_builtin_models() {
  // Families register here as they land (janus, bagel/thinkmorph, ...).
}

}  // namespace omni::models
