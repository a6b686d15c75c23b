// omni infer: understand / generate / edit with any registered model.
#include <filesystem>
#include <memory>

#include "commands.h"
#include "omni/core/error.h"
#include "omni/core/log.h"
#include "omni/models/registry.h"

namespace omni::cli {
namespace {

template <typename T>
void optional_flag(CLI::App* cmd, const std::string& name, std::optional<T>& target, const std::string& help) {
  cmd->add_option_function<T>(name, [&target](const T& v) { target = v; }, help);
}

}  // namespace

void add_infer_command(CLI::App& app, Runner& run) {
  auto* cmd = app.add_subcommand("infer", "run a model: --mode understand | generate | edit");
  auto o = std::make_shared<models::InferOptions>();
  auto cfg_interval = std::make_shared<std::string>();
  cmd->add_option("--model_path", o->model_path, "model directory (config.json + weights)")->required();
  cmd->add_option("--model_type", o->model_type, "model family; detected from the directory when omitted");
  cmd->add_option("--mode", o->mode, "understand | generate | edit")->default_str("understand");
  cmd->add_option("--prompt", o->prompt, "question, instruction or image description; <image> marks image places");
  cmd->add_option("--image", o->images, "input image (repeat for several)");
  cmd->add_option("--output", o->output, "output image path (generate/edit)");
  cmd->add_option("--trace", o->trace, "write named intermediates to this .safetensors file");
  cmd->add_option("--max_new_tokens", o->max_new_tokens, "text tokens to generate at most")->default_str("512");
  optional_flag(cmd, "--temperature", o->temperature, "sampling temperature (understand: 0 = greedy)");
  optional_flag(cmd, "--top_p", o->top_p, "nucleus sampling threshold");
  optional_flag(cmd, "--seed", o->seed, "random seed (libtorch generator)");
  optional_flag(cmd, "--cfg_weight", o->cfg_weight, "classifier-free guidance weight (Janus)");
  cmd->add_option("--parallel_size", o->parallel_size, "images to generate in one batch")->default_str("1");
  optional_flag(cmd, "--steps", o->steps, "flow-matching timesteps");
  optional_flag(cmd, "--height", o->height, "output height");
  optional_flag(cmd, "--width", o->width, "output width");
  optional_flag(cmd, "--cfg_text_scale", o->cfg_text_scale, "text CFG scale");
  optional_flag(cmd, "--cfg_img_scale", o->cfg_img_scale, "image CFG scale");
  cmd->add_option("--cfg_interval", *cfg_interval, "CFG interval A,B");
  optional_flag(cmd, "--timestep_shift", o->timestep_shift, "timestep shift");
  optional_flag(cmd, "--cfg_renorm_type", o->cfg_renorm_type, "global | channel | text_channel");
  optional_flag(cmd, "--cfg_renorm_min", o->cfg_renorm_min, "CFG renorm minimum");
  optional_flag(cmd, "--init_noise", o->init_noise, "safetensors file with the initial noise draws");
  cmd->add_flag("--think", o->think, "write a plan before drawing");
  cmd->callback([&run, o, cfg_interval] {
    run = [o, cfg_interval]() -> int {
      if (!cfg_interval->empty()) {
        double a = 0, b = 0;
        char comma = 0;
        if (std::sscanf(cfg_interval->c_str(), "%lf%c%lf", &a, &comma, &b) != 3 || comma != ',')
          throw Error("--cfg_interval '" + *cfg_interval + "'", "expected two numbers A,B such as 0.4,1.0");
        o->cfg_interval = std::make_pair(a, b);
      }
      models::register_builtin_models();
      const auto& entry = o->model_type.empty() ? models::detect_model(o->model_path) : models::find_model(o->model_type);
      if (!std::filesystem::is_directory(o->model_path)) throw Error(o->model_path, "model directory not found");
      if (std::find(entry.modes.begin(), entry.modes.end(), o->mode) == entry.modes.end()) {
        std::string modes;
        for (const auto& m : entry.modes) modes += (modes.empty() ? "" : ", ") + m;
        throw Error("--mode " + o->mode, "not supported by " + entry.model_type + " (supported: " + modes + ")");
      }
      for (const auto& img : o->images)
        if (!std::filesystem::is_regular_file(img)) throw Error(img, "image file not found");
      o->model_type = entry.model_type;
      log_debug("model type ", entry.model_type, " (", o->model_path, ")");
      return entry.infer(*o);
    };
  });
}

}  // namespace omni::cli
