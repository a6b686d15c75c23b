// The omni CLI's subcommands. Each add_*_command registers its flags on `app` and sets `run`
// to the work to do when that subcommand is chosen. The CLI stays thin: parse, call the library.
#pragma once
#include <CLI/CLI.hpp>
#include <functional>

namespace omni::cli {

using Runner = std::function<int()>;

void add_inspect_command(CLI::App& app, Runner& run);
void add_tokenize_command(CLI::App& app, Runner& run);
void add_infer_command(CLI::App& app, Runner& run);
void add_train_command(CLI::App& app, Runner& run);
void add_launch_command(CLI::App& app, Runner& run);
void add_eval_command(CLI::App& app, Runner& run);
void add_shapes_command(CLI::App& app, Runner& run);
void add_init_command(CLI::App& app, Runner& run);

}  // namespace omni::cli
