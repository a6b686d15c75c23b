// omni: one CLI for unified multimodal models. `omni --help` lists the subcommands.
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <string>

#include "commands.h"
#include "omni/core/error.h"
#include "omni/core/log.h"
#include "omni/core/memory.h"

namespace {
// Every error is one line: "error: <first line of the message>".
int fail(const std::string& message, int status) {
  std::string msg = message;
  auto nl = msg.find('\n');
  if (nl != std::string::npos) msg.resize(nl);
  std::fprintf(stderr, "error: %s\n", msg.c_str());
  return status;
}
}  // namespace

int main(int argc, char** argv) {
  omni::keep_freed_memory_for_reuse();  // see omni/core/memory.h
  CLI::App app{"omni.cpp: understand, generate, edit and train unified multimodal models"};
  app.name("omni");
  app.require_subcommand(1);
  std::string log_level;
  app.add_option("--log", log_level, "log level: debug, info, warn, error, off (env OMNI_LOG)");

  omni::cli::Runner run;
  omni::cli::add_inspect_command(app, run);
  omni::cli::add_tokenize_command(app, run);
  omni::cli::add_infer_command(app, run);
  omni::cli::add_train_command(app, run);
  omni::cli::add_launch_command(app, run);
  omni::cli::add_eval_command(app, run);
  omni::cli::add_shapes_command(app, run);
  omni::cli::add_init_command(app, run);

  if (argc == 1) {  // a bare `omni` shows what it can do
    std::fputs(app.help().c_str(), stdout);
    return 0;
  }
  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForAllHelp& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    return fail(e.what(), 2);  // unknown flags, values that do not convert, missing ones
  }
  try {
    if (!log_level.empty()) {
      omni::set_log_level(omni::parse_log_level(log_level));
      setenv("OMNI_LOG", log_level.c_str(), 1);  // processes `omni launch` starts log the same way
    }
    return run ? run() : 0;
  } catch (const omni::Error& e) {
    return fail(e.what(), 1);
  } catch (const std::bad_alloc&) {
    return fail("out of memory", 1);
  } catch (const std::exception& e) {
    return fail(e.what(), 1);  // libtorch (c10::Error) and the standard library
  }
}
