// Interleaved input: text and images in order (llama.cpp mtmd's input chunks). One parser turns
// a prompt with "<image>" markers plus a list of image files into chunks; every family renders
// the chunks in its own chat format. torch-free.
#pragma once
#include <cstddef>
#include <functional>
#include <string>
#include <vector>

#include "omni/io/image.h"

namespace omni::generate {

struct InputChunk {
  enum class Kind { Text, Image };
  Kind kind = Kind::Text;
  std::string text;        // Text
  std::string image_path;  // Image from a file (empty for an in-memory image)
  io::Image image;         // Image pixels (filled by decode_images or by the caller)
  bool is_image() const { return kind == Kind::Image; }
};

struct InterleavedInput {
  std::vector<InputChunk> chunks;
  // True when the prompt placed the images with markers; false when the images were put first
  // (some chat formats separate leading images from the text, e.g. Janus' "<tag>\n").
  bool placed_by_markers = false;

  size_t num_images() const;
  bool empty() const { return chunks.empty(); }
  // All text chunks concatenated (for text-only uses such as a t2i caption).
  std::string text() const;
  // Reads every image chunk that has a path with the family's decode rule (e.g. io::read_image,
  // or io::read_image_composited for PIL-style alpha compositing).
  void decode_images(const std::function<io::Image(const std::string& path)>& read);

  // "<image>" markers in `prompt` take the images in order; with no marker the images come
  // first, then the prompt. Throws omni::Error when the marker count and the image count
  // disagree, or when an image file does not exist. Empty text pieces are dropped.
  static InterleavedInput parse(const std::string& prompt, const std::vector<std::string>& image_paths,
                                const std::string& marker = "<image>");
};

}  // namespace omni::generate
