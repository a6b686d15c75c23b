// omni: one CLI for unified multimodal models. `omni --help` lists the subcommands.
#include <malloc.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <string>

#include "commands.h"
#include "omni/core/error.h"
#include "omni/core/log.h"

namespace {
// glibc hands every freed block over 32 MB straight back to the OS and page-faults fresh zeroed
// pages for the next one; the large activations of a ViT / VAE / flow step are freed and
// re-allocated every layer, which cost seconds of system time (bench_janus: VQ decode 5.6 s ->
// 3.1 s, ViT 2.9 s -> 2.5 s with reuse, for +0.5 GiB peak RSS). So keep freed blocks in the heap.
// OMNI_MALLOC_REUSE=0 restores glibc's defaults.
void keep_freed_memory_for_reuse() {
  const char* env = std::getenv("OMNI_MALLOC_REUSE");
  if (env && std::strcmp(env, "0") == 0) return;
  mallopt(M_MMAP_MAX, 0);
  mallopt(M_TRIM_THRESHOLD, 2000000000);
}
}  // namespace

int main(int argc, char** argv) {
  keep_freed_memory_for_reuse();
  CLI::App app{"omni.cpp: understand, generate, edit and train unified multimodal models"};
  app.require_subcommand(1);
  std::string log_level;
  app.add_option("--log", log_level, "log level: debug, info, warn, error, off (env OMNI_LOG)");

  omni::cli::Runner run;
  omni::cli::add_inspect_command(app, run);
  omni::cli::add_tokenize_command(app, run);
  omni::cli::add_infer_command(app, run);

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }
  try {
    if (!log_level.empty()) omni::set_log_level(omni::parse_log_level(log_level));
    return run ? run() : 0;
  } catch (const omni::Error& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  } catch (const std::bad_alloc&) {
    std::fprintf(stderr, "error: out of memory\n");
    return 1;
  } catch (const std::exception& e) {
    // libtorch (c10::Error) and the standard library land here; keep it to one line.
    std::string msg = e.what();
    auto nl = msg.find('\n');
    if (nl != std::string::npos) msg.resize(nl);
    std::fprintf(stderr, "error: %s\n", msg.c_str());
    return 1;
  }
}
