// BAGEL and SenseNova-U1 keep to the model's context (max_position_embeddings), as Janus does
// (test_cli_janus_torch): a prompt that does not fit is one error line before any prefill, and an
// answer asked for more tokens than the context holds stops at its end. The tiny fixtures' context
// (32768) would take minutes to reach, so each runs from a folder of links to the fixture's files
// whose config sets a short one.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

#include "cli_test_util.h"
#include "omni/io/checkpoint_torch.h"

using omni::io::Checkpoint;
using namespace omni::testing;
namespace fs = std::filesystem;

namespace {
const std::string kFixtures = OMNI_FIXTURES;

// `fixture`'s files linked into a new folder, `config_file` copied with its one
// "max_position_embeddings": 32768 set to `context`.
fs::path with_context(const std::string& fixture, const std::string& config_file, int context) {
  const fs::path src = kFixtures + "/" + fixture, dst = tmpdir(fixture + "_ctx" + std::to_string(context));
  for (const auto& e : fs::directory_iterator(src))
    if (e.path().filename() != config_file && !fs::exists(dst / e.path().filename()))
      fs::create_symlink(e.path(), dst / e.path().filename());
  std::ifstream in(src / config_file);
  std::stringstream ss;
  ss << in.rdbuf();
  std::string text = ss.str();
  const std::string from = "\"max_position_embeddings\": 32768";
  const auto at = text.find(from);
  EXPECT_NE(at, std::string::npos) << config_file;
  EXPECT_EQ(text.find(from, at + 1), std::string::npos) << config_file << ": more than one";
  if (at != std::string::npos) text.replace(at, from.size(), "\"max_position_embeddings\": " + std::to_string(context));
  std::ofstream(dst / config_file) << text;
  return dst;
}

std::string words(int n) {
  std::string s;
  for (int i = 0; i < n; ++i) s += "a ";
  return s;
}

int64_t generated(const fs::path& trace) { return Checkpoint::open(trace.string()).get("generated_ids").numel(); }
}  // namespace

TEST(CliContext, BagelPromptPastTheContextIsAnErrorAndTheAnswerStopsAtItsEnd) {
  const fs::path m = with_context("bagel_tiny", "llm_config.json", 48);
  CliRun r = run("--log warn infer --model_path " + m.string() + " --prompt '" + words(60) + "'");
  EXPECT_EQ(r.rc, 1) << r.err;
  EXPECT_NE(r.err.find("error: --prompt: "), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("the model's context is 48 (max_position_embeddings)"), std::string::npos) << r.err;
  EXPECT_EQ(r.err.find('\n'), r.err.size() - 1) << r.err;
  // 200 new tokens asked: the answer ends with the context (the random weights never say <|im_end|>
  // in these 48: 43 tokens after a 5-position prompt)
  const fs::path trace = tmpdir("bagel_ctx_trace") / "t.safetensors";
  r = run("--log warn infer --model_path " + m.string() + " --prompt hi --max_new_tokens 200 --trace " + trace.string());
  ASSERT_EQ(r.rc, 0) << r.err;
  const int64_t n = generated(trace);
  EXPECT_GT(n, 0);
  EXPECT_LT(n, 48);
  // and within the context nothing changes: 8 tokens asked, 8 given
  r = run("--log warn infer --model_path " + m.string() + " --prompt hi --max_new_tokens 8 --trace " + trace.string());
  ASSERT_EQ(r.rc, 0) << r.err;
  EXPECT_EQ(generated(trace), 8);
}

TEST(CliContext, U1PromptPastTheContextIsAnErrorAndTheAnswerStopsAtItsEnd) {
  const fs::path m = with_context("u1_tiny", "config.json", 60);
  for (const std::string mode : {"understand", "generate"}) {
    const std::string out = mode == "generate" ? " --width 64 --height 64 --steps 1 --output " +
                                                     (tmpdir("u1_ctx_out") / "x.png").string()
                                               : "";
    CliRun r =
        run("--log warn infer --model_path " + m.string() + " --mode " + mode + " --prompt '" + words(60) + "'" + out);
    EXPECT_EQ(r.rc, 1) << mode << ": " << r.err;
    EXPECT_NE(r.err.find("error: --prompt: the prompt is "), std::string::npos) << r.err;
    EXPECT_NE(r.err.find("the model's context is 60 (max_position_embeddings)"), std::string::npos) << r.err;
    EXPECT_EQ(r.err.find('\n'), r.err.size() - 1) << r.err;
  }
  const fs::path trace = tmpdir("u1_ctx_trace") / "t.safetensors";
  CliRun r =
      run("--log warn infer --model_path " + m.string() + " --prompt hi --max_new_tokens 200 --trace " + trace.string());
  ASSERT_EQ(r.rc, 0) << r.err;
  auto t = Checkpoint::open(trace.string());
  const int64_t prompt = t.get("input_ids").numel(), n = t.get("generated_ids").numel();
  EXPECT_GT(n, 0);
  EXPECT_LE(prompt + n, 60);  // 18 + 42 with these weights
}
