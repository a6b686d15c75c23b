// Runs the omni binary from CLI tests: stdout/stderr captured, exit status decoded.
#pragma once
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

#include "test_paths.h"

namespace omni::testing {

inline const std::string& omni_binary() {
  static const std::string p = std::string(OMNI_BINARY_DIR) + "/omni";
  return p;
}

struct CliRun {
  int rc;
  std::string out, err;
};

// A per-process scratch directory under the system temp dir.
inline std::filesystem::path tmpdir(const std::string& name) {
  namespace fs = std::filesystem;
  fs::path d = fs::temp_directory_path() / ("omni_cli_" + std::to_string(::getpid())) / name;
  fs::create_directories(d);
  return d;
}

// `omni <args>` with stdin from /dev/null.
inline CliRun run(const std::string& args) {
  auto tmp = tmpdir("io");
  const std::string out = (tmp / "stdout").string(), err = (tmp / "stderr").string();
  const std::string cmd = omni_binary() + " " + args + " > " + out + " 2> " + err + " < /dev/null";
  int status = std::system(cmd.c_str());
  auto slurp = [](const std::string& p) {
    std::ifstream in(p);
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
  };
  return {WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status), slurp(out), slurp(err)};
}

}  // namespace omni::testing
