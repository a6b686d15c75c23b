#include "omni/io/data_paths.h"

#include <filesystem>

#include "omni/core/error.h"

namespace omni::io {
namespace fs = std::filesystem;

std::string resolve_data_path(const std::string& p, const std::string& root, bool allow_absolute,
                              const std::string& where, const std::string& allow_setting) {
  if (p.empty()) throw Error(where, "an empty image path");
  const fs::path path(p);
  if (!allow_absolute) {
    if (path.is_absolute()) throw Error(where, "image '" + p + "': absolute paths are refused (set " + allow_setting + ")");
    for (const auto& part : path)
      if (part == "..") throw Error(where, "image '" + p + "': '..' is refused (set " + allow_setting + ")");
  }
  const fs::path full = path.is_absolute() ? path : fs::path(root) / path;
  std::error_code ec;
  if (!fs::is_regular_file(full, ec)) throw Error(where, "image '" + p + "': no such file (" + full.string() + ")");
  return full.string();
}

}  // namespace omni::io
