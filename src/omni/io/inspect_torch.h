// `omni inspect`: what a checkpoint file or model directory holds, without reading tensor data.
#pragma once
#include <nlohmann/json.hpp>
#include <string>

namespace omni::io {

// Report as JSON: {path, model_type?, config?, checkpoints: [{label, files, tensors, parameters,
// bytes, dtypes: {F32: n}, modules: {top-level name: parameters}}], totals}.
nlohmann::ordered_json inspect_path(const std::string& path);
// Human-readable rendering of that report.
std::string format_inspect_report(const nlohmann::ordered_json& report);

}  // namespace omni::io
