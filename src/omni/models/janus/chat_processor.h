// Janus' VLChatProcessor + VLMImageProcessor: the "deepseek" SFT prompt format, image-slot
// expansion and image preprocessing (keep aspect, long side to image_size with PIL bicubic,
// centre-pad with the background colour, rescale + normalise).
#pragma once
#include <array>
#include <string>
#include <vector>

#include "omni/generate/interleaved.h"
#include "omni/io/image.h"
#include "omni/io/image_tensor.h"

namespace omni::text {
class Tokenizer;
}

namespace omni::models::janus {

// The official class attribute VLChatProcessor.system_prompt.
extern const char* const kDefaultSystemPrompt;

struct ProcessorConfig {
  // preprocessor_config.json (VLMImageProcessor)
  int image_size = 384;
  int min_size = 14;
  io::ImageNormalization norm;
  std::array<uint8_t, 3> background{127, 127, 127};  // int(255 * mean), as the code recomputes it
  // processor_config.json (VLChatProcessor) + constructor defaults
  std::string image_tag = "<image_placeholder>";
  std::string image_start_tag = "<begin_of_image>";
  std::string image_end_tag = "<end_of_image>";
  std::string pad_tag = "<\xEF\xBD\x9C\xE2\x96\x81pad\xE2\x96\x81\xEF\xBD\x9C>";  // <｜▁pad▁｜>
  int num_image_tokens = 576;
  bool add_special_token = false;

  // Reads preprocessor_config.json and processor_config.json from `dir` (each optional; absent
  // keys keep the official defaults above).
  static ProcessorConfig load(const std::string& dir);
};

struct Message {
  std::string role;  // "<|User|>" or "<|Assistant|>"
  std::string content;
};

// The deepseek template: "{system}\n\n" (when non-empty), then "role: content" + sep per turn
// (sep "\n\n" after user turns, "<｜end▁of▁sentence｜>" after assistant turns), "role:" for an
// empty turn; the whole string stripped.
std::string render_deepseek(const std::vector<Message>& turns, const std::string& system_prompt);

// A turn's text: image chunks become the image tag, followed by "\n" when the images were put
// first rather than placed by <image> markers (as the official examples write them).
std::string user_content(const generate::InterleavedInput& in, const std::string& image_tag);

// Replaces every `image_id` with [begin_id, image_id × n, end_id] (add_image_token).
std::vector<int32_t> expand_image_slots(const std::vector<int32_t>& ids, int32_t image_id, int32_t begin_id,
                                        int32_t end_id, int n);

// Resize (keep aspect, long side -> image_size, short side >= min_size) then centre-pad.
io::Image preprocess_image(const io::Image& img, const ProcessorConfig& cfg);

// Token ids of the tags, looked up by string in the tokenizer.
struct SpecialIds {
  int32_t image, image_start, image_end, pad, bos, eos;
  static SpecialIds lookup(const text::Tokenizer& tok, const ProcessorConfig& cfg);
};

}  // namespace omni::models::janus
