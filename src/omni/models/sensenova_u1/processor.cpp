#include "omni/models/sensenova_u1/processor.h"

#include <cmath>

#include "omni/core/error.h"
#include "omni/io/image_tensor.h"
#include "omni/io/resize.h"

namespace omni::sensenova_u1 {

const char* const kSystemMessageForGen =
    "You are an image generation and editing assistant that accurately understands and executes "
    "user intent.\n\nYou support two modes:\n\n1. Think Mode:\nIf the task requires reasoning, you "
    "MUST start with a <think></think> block. Put all reasoning inside the block using plain text. "
    "DO NOT include any image tags. Keep it reasonable and directly useful for producing the final "
    "image.\n\n2. Non-Think Mode:\nIf no reasoning is needed, directly produce the final image.\n\n"
    "Task Types:\n\nA. Text-to-Image Generation:\n"
    "- Generate a high-quality image based on the user's description.\n"
    "- Ensure visual clarity, semantic consistency, and completeness.\n"
    "- DO NOT introduce elements that contradict or override the user's intent.\n\n"
    "B. Image Editing:\n"
    "- Use the provided image(s) as input or reference for modification or transformation.\n"
    "- The result can be an edited image or a new image based on the reference(s).\n"
    "- Preserve all unspecified attributes unless explicitly changed.\n\n"
    "General Rules:\n"
    "- For any visible text in the image, follow the language specified for the rendered text in "
    "the user's description, not the language of the prompt. If no language is specified, use the "
    "user's input language.";

const char* const kSystemMessageForInterleave =
    "You are a multimodal assistant capable of reasoning with both text and images. You support two modes:\n\n"
    "Think Mode: When reasoning is needed, you MUST start with a <think></think> block and place all reasoning "
    "inside it. You MUST interleave text with generated images using tags like <image1>, <image2>. Images can ONLY "
    "be generated between <think> and </think>, and may be referenced in the final answer.\n\n"
    "Non-Think Mode: When no reasoning is needed, directly provide the answer without reasoning. Do not use tags "
    "like <image1>, <image2>; present any images naturally alongside the text.\n\n"
    "After the think block, always provide a concise, user-facing final answer. The answer may include text, "
    "images, or both. Match the user's language in both reasoning and the final answer.";

std::string system_message_for_gen(const U1Config& c) {
  return c.omni.system_message_for_gen.value_or(kSystemMessageForGen);
}

std::string chat_prompt(const std::string& system, const std::string& user) {
  std::string s;
  if (!system.empty()) s += "<|im_start|>system\n" + system + "<|im_end|>\n";
  s += "<|im_start|>user\n" + user + "<|im_end|>\n";
  s += "<|im_start|>assistant\n";
  return s;
}

std::pair<int64_t, int64_t> smart_resize(int64_t height, int64_t width, int64_t factor, int64_t min_pixels,
                                         int64_t max_pixels) {
  check(height > 0 && width > 0, "image", "has no pixels");
  const double h = static_cast<double>(height), w = static_cast<double>(width), f = static_cast<double>(factor);
  check(std::max(h, w) / std::min(h, w) <= 200, "image",
        "absolute aspect ratio must be smaller than 200 (got " + std::to_string(width) + "x" + std::to_string(height) + ")");
  auto round_by = [&](double x) { return static_cast<int64_t>(std::nearbyint(x / f)) * factor; };  // Python round: half to even
  auto floor_by = [&](double x) { return static_cast<int64_t>(std::floor(x / f)) * factor; };
  auto ceil_by = [&](double x) { return static_cast<int64_t>(std::ceil(x / f)) * factor; };
  int64_t hb = std::max(factor, round_by(h)), wb = std::max(factor, round_by(w));
  if (hb * wb > max_pixels) {
    const double beta = std::sqrt(h * w / static_cast<double>(max_pixels));
    hb = std::max(factor, floor_by(h / beta));
    wb = std::max(factor, floor_by(w / beta));
  } else if (hb * wb < min_pixels) {
    const double beta = std::sqrt(static_cast<double>(min_pixels) / (h * w));
    hb = ceil_by(h * beta);
    wb = ceil_by(w * beta);
  }
  return {hb, wb};
}

namespace {
torch::Tensor patch_rows(const torch::Tensor& chw, int64_t p) {  // [3, H, W] -> [(H/p)(W/p), 3 p p]
  const int64_t C = chw.size(0), gh = chw.size(1) / p, gw = chw.size(2) / p;
  return chw.view({C, gh, p, gw, p}).permute({1, 3, 0, 2, 4}).reshape({gh * gw, C * p * p});
}
}  // namespace

NativeImage load_image_native(const io::Image& img, const U1Config& c, int64_t min_pixels, int64_t max_pixels) {
  const int64_t p = c.patch_size();
  const auto [h, w] = smart_resize(img.height, img.width, c.token_pixels(), min_pixels, max_pixels);
  const io::Image resized = (h == img.height && w == img.width)
                                ? img
                                : io::resize(img, static_cast<int>(w), static_cast<int>(h), io::Resample::Bicubic);
  NativeImage out;
  out.pixel_values = patch_rows(io::image_to_tensor(resized, io::ImageNormalization::imagenet()), p);
  out.grid = {h / p, w / p};
  return out;
}

torch::Tensor renormalize_generated(const torch::Tensor& x, int64_t patch) {
  auto raw = x * 0.5 + 0.5;
  const auto fo = torch::TensorOptions().dtype(raw.scalar_type()).device(raw.device());
  auto mean = torch::tensor({0.485, 0.456, 0.406}, fo).view({1, 3, 1, 1});
  auto std = torch::tensor({0.229, 0.224, 0.225}, fo).view({1, 3, 1, 1});
  return patch_rows(((raw - mean) / std)[0], patch);
}

SpecialIds SpecialIds::from(const text::Tokenizer& tok) {
  SpecialIds s;
  s.img_start = tok.require_token_id("<img>");
  s.img_end = tok.require_token_id("</img>");
  s.img_context = tok.require_token_id("<IMG_CONTEXT>");
  s.im_end = tok.require_token_id("<|im_end|>");
  s.think_end = tok.require_token_id("</think>");
  return s;
}

std::string expand_images(const std::string& query, const std::vector<int64_t>& tokens_per_image) {
  std::string out = query;
  size_t from = 0;
  for (const int64_t n : tokens_per_image) {
    const size_t at = out.find("<image>", from);
    check(at != std::string::npos, "prompt", "fewer <image> markers than images");
    std::string rep = "<img>";
    rep.reserve(5 + 13 * n + 6);
    for (int64_t i = 0; i < n; ++i) rep += "<IMG_CONTEXT>";
    rep += "</img>";
    out.replace(at, 7, rep);
    from = at + rep.size();
  }
  return out;
}

torch::Tensor thw_indexes(const std::vector<int64_t>& ids, const std::vector<GridHW>& grids, int64_t merge,
                          const SpecialIds& s) {
  const int64_t T = static_cast<int64_t>(ids.size());
  auto out = torch::zeros({3, T}, torch::kLong);
  auto a = out.accessor<int64_t, 2>();
  int64_t t = -1, prev = -1;
  size_t image = 0;
  int64_t in_image = 0;  // position inside the current image's tokens
  for (int64_t i = 0; i < T; ++i) {
    const int64_t id = ids[i];
    t += (id != s.img_context ? 1 : 0) + (prev == s.img_start ? 1 : 0);
    a[0][i] = t;
    if (id == s.img_context) {
      check(image < grids.size(), "image tokens", "more <IMG_CONTEXT> runs than images");
      const int64_t gw = grids[image].second / merge, n = grids[image].first * grids[image].second / (merge * merge);
      a[1][i] = in_image / gw;
      a[2][i] = in_image % gw;
      if (++in_image == n) {
        ++image;
        in_image = 0;
      }
    }
    prev = id;
  }
  return out;
}

}  // namespace omni::sensenova_u1
