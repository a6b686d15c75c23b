// Janus prompt format, tokenisation + image-slot expansion and image preprocessing against the
// official VLChatProcessor outputs in janus_tiny.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include "omni/core/error.h"
#include "omni/io/checkpoint_torch.h"
#include "omni/io/image.h"
#include "omni/io/image_tensor.h"
#include "omni/models/janus/chat_processor.h"
#include "omni/text/tokenizer.h"
#include "test_paths.h"

using namespace omni;
using namespace omni::models::janus;

namespace {
const std::string kDir = std::string(OMNI_FIXTURES) + "/janus_tiny";
std::vector<int32_t> ids_of(const torch::Tensor& t) {
  auto flat = t.to(torch::kInt64).flatten();
  std::vector<int32_t> out(flat.numel());
  for (int64_t i = 0; i < flat.numel(); ++i) out[i] = static_cast<int32_t>(flat[i].item<int64_t>());
  return out;
}
}  // namespace

// The user turn of a CLI prompt with n copies of the fixture image.
std::string content(const std::string& prompt, size_t n, const std::string& tag) {
  return user_content(generate::InterleavedInput::parse(prompt, std::vector<std::string>(n, kDir + "/test_image.png")), tag);
}

TEST(JanusProcessor, RendersTheOfficialPrompts) {
  const std::string und = render_deepseek({{"<|User|>", "<image_placeholder>\nDescribe this image."}, {"<|Assistant|>", ""}},
                                          kDefaultSystemPrompt);
  EXPECT_EQ(und, std::string(kDefaultSystemPrompt) +
                     "\n\n<|User|>: <image_placeholder>\nDescribe this image.\n\n<|Assistant|>:");
  const std::string t2i = render_deepseek({{"<|User|>", "A red apple on a wooden table."}, {"<|Assistant|>", ""}}, "");
  EXPECT_EQ(t2i + "<begin_of_image>", "<|User|>: A red apple on a wooden table.\n\n<|Assistant|>:<begin_of_image>");
  // A finished assistant turn ends with EOS, then the next user turn follows directly.
  const std::string multi = render_deepseek({{"<|User|>", "hi"}, {"<|Assistant|>", "hello"}, {"<|User|>", "more"}}, "");
  EXPECT_EQ(multi, "<|User|>: hi\n\n<|Assistant|>: hello<\xEF\xBD\x9C" "end\xE2\x96\x81of\xE2\x96\x81sentence\xEF\xBD\x9C><|User|>: more");
}

TEST(JanusProcessor, TokenisesAndExpandsLikeTheFixture) {
  auto tok = text::Tokenizer::from_file(kDir + "/tokenizer.json");
  auto cfg = ProcessorConfig::load(kDir);
  EXPECT_EQ(cfg.num_image_tokens, 576);
  EXPECT_EQ(cfg.image_size, 384);
  EXPECT_EQ(cfg.background, (std::array<uint8_t, 3>{127, 127, 127}));
  auto sp = SpecialIds::lookup(tok, cfg);
  EXPECT_EQ(sp.image, 4);
  EXPECT_EQ(sp.bos, 1);
  EXPECT_EQ(sp.eos, 2);

  const std::string und = render_deepseek(
      {{"<|User|>", content("Describe this image.", 1, cfg.image_tag)}, {"<|Assistant|>", ""}}, kDefaultSystemPrompt);
  auto ids = expand_image_slots(tok.encode(und, true), sp.image, sp.image_start, sp.image_end, cfg.num_image_tokens);
  auto want = ids_of(io::Checkpoint::open(kDir + "/understanding.safetensors").get("input_ids"));
  ASSERT_EQ(ids.size(), 814u);
  EXPECT_EQ(ids, want);

  const std::string t2i =
      render_deepseek({{"<|User|>", "A red apple on a wooden table."}, {"<|Assistant|>", ""}}, "") + cfg.image_start_tag;
  EXPECT_EQ(tok.encode(t2i, true), ids_of(io::Checkpoint::open(kDir + "/t2i.safetensors").get("prompt_ids")));
}

TEST(JanusProcessor, ImageMarkers) {
  EXPECT_EQ(content("What is this?", 1, "<IMG>"), "<IMG>\nWhat is this?");
  EXPECT_EQ(content("Compare", 2, "<IMG>"), "<IMG>\n<IMG>\nCompare");
  EXPECT_EQ(content("A <image> and B <image>?", 2, "<IMG>"), "A <IMG> and B <IMG>?");
  EXPECT_EQ(content("no images", 0, "<IMG>"), "no images");
  try {
    content("A <image> B <image>", 1, "<IMG>");
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("2 <image> marker(s) but 1 --image"), std::string::npos);
  }
  EXPECT_EQ(expand_image_slots({1, 4, 9}, 4, 5, 6, 3), (std::vector<int32_t>{1, 5, 4, 4, 4, 6, 9}));
}

TEST(JanusProcessor, PixelValuesBitExact) {
  auto cfg = ProcessorConfig::load(kDir);
  auto img = preprocess_image(io::read_image(kDir + "/test_image.png"), cfg);
  auto px = io::image_to_tensor(img, cfg.norm);
  auto want = io::Checkpoint::open(kDir + "/understanding.safetensors").get("pixel_values")[0][0];
  EXPECT_TRUE(torch::equal(px, want)) << "max abs " << (px - want).abs().max().item<float>();

  // The non-square case: 480x300 -> 384x240, padded at y = 72 with grey 127.
  auto ip = io::Checkpoint::open(kDir + "/image_processor.safetensors");
  auto in = ip.get("nonsquare_input_u8").contiguous();
  io::Image src;
  src.width = 480;
  src.height = 300;
  src.rgb.assign(in.data_ptr<uint8_t>(), in.data_ptr<uint8_t>() + in.numel());
  auto out = preprocess_image(src, cfg);
  auto got = torch::from_blob(out.rgb.data(), {out.height, out.width, 3}, torch::kUInt8).permute({2, 0, 1});
  EXPECT_TRUE(torch::equal(got, ip.get("nonsquare_resized_u8")));
}
