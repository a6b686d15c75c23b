// The built-in families: one line each.
#include "omni/models/bagel/family.h"
#include "omni/models/janus/family.h"
#include "omni/models/registry.h"

namespace omni::models {

void register_builtin_models() {
  register_family(janus::janus_family());
  register_family(bagel::bagel_family());
  register_family(bagel::thinkmorph_family());
}

}  // namespace omni::models
