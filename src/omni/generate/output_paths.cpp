#include "omni/generate/output_paths.h"

#include <filesystem>

namespace omni::generate {

std::string numbered_output(const std::string& path, int index) {
  if (index == 0) return path;
  const std::filesystem::path p(path);
  return (p.parent_path() / (p.stem().string() + "_" + std::to_string(index) + p.extension().string())).string();
}

}  // namespace omni::generate
