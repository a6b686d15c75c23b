#include "omni/generate/interleaved.h"

#include <filesystem>

#include "omni/core/error.h"

namespace omni::generate {

size_t InterleavedInput::num_images() const {
  size_t n = 0;
  for (const auto& c : chunks) n += c.is_image();
  return n;
}

std::string InterleavedInput::text() const {
  std::string s;
  for (const auto& c : chunks)
    if (!c.is_image()) s += c.text;
  return s;
}

void InterleavedInput::decode_images(const std::function<io::Image(const std::string&)>& read) {
  for (auto& c : chunks)
    if (c.is_image() && !c.image_path.empty()) c.image = read(c.image_path);
}

InterleavedInput InterleavedInput::parse(const std::string& prompt, const std::vector<std::string>& image_paths,
                                         const std::string& marker) {
  for (const auto& p : image_paths)
    if (!std::filesystem::is_regular_file(p)) throw Error(p, "image file not found");
  std::vector<size_t> at;
  for (size_t p = prompt.find(marker); p != std::string::npos; p = prompt.find(marker, p + marker.size()))
    at.push_back(p);
  if (!at.empty() && at.size() != image_paths.size())
    throw Error("--prompt", "has " + std::to_string(at.size()) + " " + marker + " marker(s) but " +
                                std::to_string(image_paths.size()) + " --image given");
  InterleavedInput in;
  in.placed_by_markers = !at.empty();
  auto add_text = [&](std::string t) {
    if (t.empty()) return;
    InputChunk c;
    c.text = std::move(t);
    in.chunks.push_back(std::move(c));
  };
  auto add_image = [&](const std::string& path) {
    InputChunk c;
    c.kind = InputChunk::Kind::Image;
    c.image_path = path;
    in.chunks.push_back(std::move(c));
  };
  if (at.empty()) {
    for (const auto& p : image_paths) add_image(p);
    add_text(prompt);
    return in;
  }
  size_t pos = 0;
  for (size_t k = 0; k < at.size(); ++k) {
    add_text(prompt.substr(pos, at[k] - pos));
    add_image(image_paths[k]);
    pos = at[k] + marker.size();
  }
  add_text(prompt.substr(pos));
  return in;
}

}  // namespace omni::generate
