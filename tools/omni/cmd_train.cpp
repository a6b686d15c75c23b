// `omni train CONFIG.yaml [--section.key value ...]`: supervised fine-tuning (omni/train/).
#include <cstdio>

#include "commands.h"
#include "omni/core/error.h"
#include "omni/train/config.h"
#include "omni/train/trainer.h"

namespace omni::cli {
namespace {

// "--train.lr 1e-4", "--train.lr=1e-4", and a bare "--train.dyn_bsz" (= true) -> key/value pairs.
std::vector<std::pair<std::string, std::string>> parse_overrides(const std::vector<std::string>& args) {
  std::vector<std::pair<std::string, std::string>> out;
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& a = args[i];
    if (a.rfind("--", 0) != 0 || a.size() == 2)
      throw Error(a, "unexpected argument (overrides are --section.key value; the config file comes first)");
    std::string key = a.substr(2), value;
    if (auto eq = key.find('='); eq != std::string::npos) {
      value = key.substr(eq + 1);
      key.resize(eq);
    } else if (i + 1 < args.size() && args[i + 1].rfind("--", 0) != 0) {
      value = args[++i];
    } else {
      value = "true";
    }
    out.emplace_back(key, value);
  }
  return out;
}

}  // namespace

void add_train_command(CLI::App& app, Runner& run) {
  auto* cmd = app.add_subcommand("train", "fine-tune a model on interleaved JSONL conversations (YAML config)");
  auto config = std::make_shared<std::string>();
  cmd->add_option("config", *config, "YAML config with sections model, data, train")->required();
  cmd->allow_extras();
  std::string keys = "\nConfig keys (override any with --section.key value; DEBUG=1 runs 3 steps, verbose):\n";
  for (const auto& [k, help] : train::config_keys()) keys += "  " + k + std::string(k.size() < 30 ? 30 - k.size() : 1, ' ') + help + "\n";
  cmd->footer(keys);
  cmd->callback([cmd, config, &run]() {
    run = [config, extras = cmd->remaining()]() {
      const auto overrides = parse_overrides(extras);
      const auto cfg = train::load_config(*config, overrides);
      const auto r = train::run_training(cfg);
      if (!r.lead) return 0;
      std::printf("trained %lld steps, final loss %.6f%s%s\n", static_cast<long long>(r.steps), r.last_loss,
                  r.last_checkpoint.empty() ? "" : "; checkpoint ", r.last_checkpoint.c_str());
      return 0;
    };
  });
}

}  // namespace omni::cli
