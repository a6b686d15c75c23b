// Placeholder until the tokenizer lands: `omni tokenize` is registered but not implemented.
#include "commands.h"
#include "omni/core/error.h"
namespace omni::cli {
void add_tokenize_command(CLI::App& app, Runner& run) {
  auto* cmd = app.add_subcommand("tokenize", "encode stdin with a tokenizer.json");
  cmd->callback([&run] { run = [] () -> int { throw Error("tokenize", "not implemented yet"); }; });
}
}  // namespace omni::cli
