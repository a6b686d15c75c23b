// Output file naming shared by every family that writes several images. torch-free.
#pragma once
#include <string>

namespace omni::generate {

// "out.png", 0 -> "out.png"; 1 -> "out_1.png" (the official scripts' numbering, one file per image).
std::string numbered_output(const std::string& path, int index);

}  // namespace omni::generate
