// Freezing by the fork's keys: each family declares which parameters a key covers
// (Trainable::freeze_keys); this applies the config to them and reports the counts per group.
#pragma once
#include <string>
#include <vector>

#include "omni/models/model.h"
#include "omni/train/config.h"

namespace omni::train {

struct GroupCount {
  std::string group;
  int64_t trainable = 0, frozen = 0;  // parameter elements
};

// Sets requires_grad on every parameter of `model`: the freeze_* keys that are on freeze what
// they cover, then unfreeze_mot_gen / unfreeze_lm_head / unfreeze_vit_layers re-enable theirs.
// A key set to a non-default value that the family does not declare throws omni::Error naming it
// and the family's keys. Returns the counts per parameter group.
std::vector<GroupCount> apply_freezing(models::Trainable& model, const Config& cfg, const std::string& family);

}  // namespace omni::train
