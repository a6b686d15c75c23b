// The family registry: one entry per family (model.h's Family), found by --model_type (name or
// alias), by config.json `model_type`, or by a family's directory detector. Adding a family adds
// one line to builtin.cpp, never a CLI change.
#pragma once
#include <memory>
#include <string>
#include <vector>

#include "omni/models/model.h"

namespace omni::models {

void register_family(Family f);
const std::vector<Family>& registered_families();

// The family for --model_type (canonical or alias); throws omni::Error listing the known types.
const Family& find_family(const std::string& model_type);
// The family of a checkpoint directory: a detector that recognises it, else config.json
// model_type; throws omni::Error naming the directory when nothing matches.
const Family& detect_family(const std::string& model_dir);
// model_type when non-empty, else detection.
const Family& resolve_family(const std::string& model_dir, const std::string& model_type);

// Registers the built-in families (explicit, so static-library linking cannot drop them).
void register_builtin_models();

}  // namespace omni::models
