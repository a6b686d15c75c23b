// omni inspect PATH [--json]: model_type, config summary, tensors, parameters per module, dtypes, bytes.
#include <cstdio>

#include "commands.h"
#include "omni/io/inspect_torch.h"

namespace omni::cli {

void add_inspect_command(CLI::App& app, Runner& run) {
  auto* cmd = app.add_subcommand("inspect", "summarise a checkpoint file, shard index or model directory");
  auto path = std::make_shared<std::string>();
  auto as_json = std::make_shared<bool>(false);
  cmd->add_option("path", *path, "checkpoint file (.safetensors, .bin), *.index.json or model directory")->required();
  cmd->add_flag("--json", *as_json, "print the report as JSON");
  cmd->callback([&run, path, as_json] {
    run = [path, as_json]() -> int {
      auto report = io::inspect_path(*path);
      if (*as_json)
        std::printf("%s\n", report.dump(2).c_str());
      else
        std::printf("%s", io::format_inspect_report(report).c_str());
      return 0;
    };
  });
}

}  // namespace omni::cli
