// SenseNova-U1's input side (official neo_unify/utils.py, conversation.py and the query builders
// of modeling_neo_chat.py): the neo1_0 ChatML template, native-resolution image loading and the
// 3-D (t, h, w) indexes. torch-free except for the pixel tensors.
#pragma once
#include <torch/torch.h>

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "omni/io/image.h"
#include "omni/models/sensenova_u1/model.h"
#include "omni/text/tokenizer.h"

namespace omni::sensenova_u1 {

// SYSTEM_MESSAGE_FOR_GEN (utils.py): the system turn of every generation / editing query.
extern const char* const kSystemMessageForGen;
// The system turn of a generate / edit query: SYSTEM_MESSAGE_FOR_GEN, or the model's own
// (config "omni".system_message_for_gen).
std::string system_message_for_gen(const U1Config& c);
// The interleave example's DEFAULT_SYSTEM_MESSAGE (examples/interleave/inference.py).
extern const char* const kSystemMessageForInterleave;

// neo1_0 (MPT separator style): "<|im_start|>system\n{sys}<|im_end|>\n" (omitted when sys is
// empty) + "<|im_start|>user\n{user}<|im_end|>\n" + "<|im_start|>assistant\n". An empty user
// message still closes its turn.
std::string chat_prompt(const std::string& system, const std::string& user);

// Qwen2.5-VL's smart_resize with Python's rounding: both sides multiples of `factor`, the pixel
// count within [min_pixels, max_pixels], the aspect ratio kept. Returns (height, width); throws
// omni::Error for an aspect ratio over 200.
std::pair<int64_t, int64_t> smart_resize(int64_t height, int64_t width, int64_t factor, int64_t min_pixels,
                                         int64_t max_pixels);

// load_image_native: smart resize (factor = patch / downsample_ratio) with Pillow's bicubic,
// ToTensor, ImageNet mean/std, 16x16 patches row-major, each row (c, py, px).
struct NativeImage {
  torch::Tensor pixel_values;  // float32 [h * w, 3 * p * p]
  GridHW grid;                 // (h, w) patches
  int64_t tokens(int64_t merge) const { return grid.first * grid.second / (merge * merge); }
};
NativeImage load_image_native(const io::Image& img, const U1Config& c, int64_t min_pixels, int64_t max_pixels);

// The official re-encoding of a generated image for the understanding branch (interleave_gen):
// x [1, 3, H, W] in [-1, 1] (not clamped) -> x * 0.5 + 0.5, ImageNet-normalised, patch rows.
torch::Tensor renormalize_generated(const torch::Tensor& x, int64_t patch);

// The tokenizer's special ids the pipelines use (looked up, never assumed).
struct SpecialIds {
  int64_t img_start = -1, img_end = -1, img_context = -1, im_end = -1, think_end = -1;
  static SpecialIds from(const text::Tokenizer& tok);
};

// <image> markers in `query` replaced in order by <img> + <IMG_CONTEXT> x n_i + </img>.
std::string expand_images(const std::string& query, const std::vector<int64_t>& tokens_per_image);

// get_thw_indexes: t = cumsum(not IMG_CONTEXT + previous is <img>) - 1 (an image's tokens share
// one t, </img> takes the next but one); h/w = row/col of each image token in its merged grid.
torch::Tensor thw_indexes(const std::vector<int64_t>& ids, const std::vector<GridHW>& grids, int64_t merge,
                          const SpecialIds& s);

}  // namespace omni::sensenova_u1
