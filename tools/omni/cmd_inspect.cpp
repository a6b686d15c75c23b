#include "commands.h"
#include "omni/core/error.h"
namespace omni::cli {
void add_inspect_command(CLI::App& app, Runner& run) {
  auto* cmd = app.add_subcommand("inspect", "summarise a checkpoint file or model directory");
  cmd->callback([&run] { run = [] () -> int { throw Error("inspect", "not implemented yet"); }; });
}
}  // namespace omni::cli
