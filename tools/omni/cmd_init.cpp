// omni init: a new model folder from a config folder (config.json and the tokenizer files) with
// freshly initialised weights, what `omni train` starts from when there is no checkpoint to
// fine-tune. The bundled demo model (models/omni-shapes) began this way.
#include <cstdio>
#include <filesystem>
#include <memory>
#include <string>
#include <system_error>

#include "commands.h"
#include "omni/core/error.h"
#include "omni/io/safetensors.h"
#include "omni/models/registry.h"

namespace omni::cli {

namespace fs = std::filesystem;

namespace {

struct InitArgs {
  std::string config, output, model_type, dtype = "fp32";
  uint64_t seed = 0;
};

// Weights in the config folder are not copied: the new folder's weights are the new ones.
bool is_weights_file(const fs::path& p) {
  const auto name = p.filename().string();
  const auto ext = p.extension().string();
  return ext == ".safetensors" || ext == ".bin" || ext == ".pt" || ext == ".pth" ||
         name.find(".safetensors.index.json") != std::string::npos || name.find(".bin.index.json") != std::string::npos;
}

int run_init(const InitArgs& a) {
  const fs::path src(a.config), out(a.output);
  if (!fs::is_directory(src))
    throw Error("--config", a.config + " is not a folder (give the folder holding config.json and the tokenizer files)");
  if (!fs::is_regular_file(src / "config.json")) throw Error("--config", a.config + " has no config.json");
  const auto& family = models::resolve_family(a.config, a.model_type);
  if (!family.init) throw Error("omni init", "the " + family.name + " family cannot be initialised from a config yet (u1 can)");
  const auto dtype = models::parse_dtype(a.dtype);
  if (!c10::isFloatingType(dtype)) throw Error("--dtype " + a.dtype, "omni init stores fp32, bf16 or fp16 weights");
  std::error_code ec;
  if (fs::exists(out) && !fs::is_directory(out)) throw Error("--output", a.output + " exists and is not a folder");
  if (fs::exists(out) && !fs::is_empty(out))
    throw Error("--output", a.output + " is not empty (omni init writes a new folder and never overwrites one)");
  const bool created = !fs::exists(out);
  fs::create_directories(out, ec);
  if (ec) throw Error("--output", "cannot create " + a.output + ": " + ec.message());
  try {
    for (const auto& e : fs::directory_iterator(src))
      if (e.is_regular_file() && !is_weights_file(e.path())) fs::copy_file(e.path(), out / e.path().filename());
    models::InitOptions o;
    o.config_file = (out / "config.json").string();
    o.weights_file = (out / "model.safetensors").string();
    o.seed = a.seed;
    o.dtype = dtype;
    family.init(o);
  } catch (...) {
    // A failed init leaves nothing half-written behind (the folder was new or empty).
    if (created) fs::remove_all(out, ec);
    else for (const auto& e : fs::directory_iterator(out, ec)) fs::remove_all(e.path(), ec);
    throw;
  }
  const auto ck = io::SafetensorsFile::open((out / "model.safetensors").string());
  int64_t params = 0;
  for (const auto& t : ck->tensors()) params += numel_of(t.shape);
  std::printf("%s: a new %s model, %lld parameters in %zu tensors (%s, seed %llu)\n", a.output.c_str(),
              family.name.c_str(), static_cast<long long>(params), ck->tensors().size(),
              models::dtype_name(dtype).c_str(), static_cast<unsigned long long>(a.seed));
  return 0;
}

}  // namespace

void add_init_command(CLI::App& app, Runner& run) {
  auto* cmd = app.add_subcommand("init", "write a new model with freshly initialised weights from a config folder");
  auto a = std::make_shared<InitArgs>();
  cmd->add_option("--config", a->config, "folder with config.json and the tokenizer files (copied)")->required();
  cmd->add_option("--output", a->output, "new model folder to write (must not exist or be empty)")->required();
  cmd->add_option("--model_type", a->model_type, "family (default: from config.json's model_type)");
  cmd->add_option("--seed", a->seed, "seed of every initial draw: the same seed writes the same weights")->default_str("0");
  cmd->add_option("--dtype", a->dtype, "stored dtype: fp32 | bf16 | fp16")->default_str("fp32");
  cmd->callback([&run, a] {
    run = [a]() -> int { return run_init(*a); };
  });
}

}  // namespace omni::cli
