// The built-in families: one line each.
#include "omni/models/bagel/family.h"
#include "omni/models/janus/family.h"
#include "omni/models/registry.h"
#include "omni/models/sensenova_u1/family.h"

namespace omni::models {

void register_builtin_models() {
  register_family(janus::janus_family());
  register_family(bagel::bagel_family());
  register_family(bagel::thinkmorph_family());
  register_family(sensenova_u1::u1_family());
}

}  // namespace omni::models
