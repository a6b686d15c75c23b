// The model registry: one entry per family, found by config.json `model_type` (or an alias, or a
// directory-layout detector for checkpoints without a config.json model_type, such as BAGEL).
// Adding a model adds an entry here, never a CLI flag.
#pragma once
#include <functional>
#include <optional>
#include <string>
#include <vector>

namespace omni::models {

// Everything `omni infer` can pass to a pipeline. Unset optionals mean "the model's official
// default for this mode".
struct InferOptions {
  std::string model_path;
  std::string model_type;  // as resolved by the registry
  std::string mode = "understand";  // understand | generate | edit
  std::string prompt;
  std::vector<std::string> images;
  std::string output;
  std::string trace;  // --trace FILE.safetensors
  int max_new_tokens = 512;
  std::optional<double> temperature, top_p, cfg_weight;
  std::optional<int64_t> seed;
  int parallel_size = 1;
  // Flow-matching generation (BAGEL family).
  std::optional<int> steps, height, width;
  std::optional<double> cfg_text_scale, cfg_img_scale, timestep_shift, cfg_renorm_min;
  std::optional<std::pair<double, double>> cfg_interval;
  std::optional<std::string> cfg_renorm_type, init_noise;
  bool think = false;
};

struct ModelEntry {
  std::string model_type;            // canonical name, e.g. "janus"
  std::vector<std::string> aliases;  // config.json model_type values, e.g. "multi_modality"
  std::vector<std::string> modes;    // supported --mode values
  // Optional: recognises a model directory without a usable config.json model_type.
  std::function<bool(const std::string& dir)> detect;
  std::function<int(const InferOptions&)> infer;
};

void register_model(ModelEntry entry);
const std::vector<ModelEntry>& registered_models();

// Finds the entry for --model_type (canonical or alias); throws omni::Error listing the known
// types when none matches.
const ModelEntry& find_model(const std::string& model_type);
// Reads <dir>/config.json model_type, then tries the detectors; throws omni::Error naming the
// directory when nothing matches.
const ModelEntry& detect_model(const std::string& model_dir);

// Registers the built-in families (explicit, so static-library linking cannot drop them).
void register_builtin_models();

}  // namespace omni::models
