// The omni CLI end to end on the tiny Janus fixture: understand and generate, checked against
// the golden tokens through --trace, plus the error paths a user hits first.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "omni/io/checkpoint_torch.h"
#include "omni/io/image.h"
#include "cli_test_util.h"
#include "test_paths.h"

namespace fs = std::filesystem;
using omni::io::Checkpoint;

namespace {
const std::string kDir = std::string(OMNI_FIXTURES) + "/janus_tiny";
using omni::testing::CliRun;
using omni::testing::run;
using omni::testing::tmpdir;
}  // namespace

TEST(CliJanus, UnderstandStreamsTheGreedyAnswerOfTheOfficialCode) {
  auto d = tmpdir("und");
  const std::string trace = (d / "trace.safetensors").string();
  CliRun r = run("infer --model_path " + kDir + " --mode understand --image " + kDir +
              "/test_image.png --prompt 'Describe this image.' --max_new_tokens 8 --trace " + trace);
  ASSERT_EQ(r.rc, 0) << r.err;
  auto t = Checkpoint::open(trace);
  auto golden = Checkpoint::open(kDir + "/understanding.safetensors");
  EXPECT_TRUE(torch::equal(t.get("input_ids"), golden.get("input_ids")));
  EXPECT_TRUE(torch::equal(t.get("pixel_values"), golden.get("pixel_values")));
  EXPECT_TRUE(torch::equal(t.get("generated_ids"), golden.get("greedy_tokens")))
      << t.get("generated_ids") << "\nvs\n" << golden.get("greedy_tokens");
  auto last = golden.get("logits_last8").select(1, 7);  // [1, V]
  EXPECT_LT((t.get("logits_last") - last).abs().max().item<float>(), 1e-4);
  EXPECT_EQ(t.info("inputs_embeds").shape, (std::vector<int64_t>{1, 814, 64}));
  // The streamed text is the decode of those ids (the toy tokenizer maps id 16+b to byte b).
  EXPECT_FALSE(r.out.empty());
  EXPECT_EQ(r.out.back(), '\n');
}

TEST(CliJanus, GenerateWritesPngsWithTheOfficialTokens) {
  auto d = tmpdir("gen");
  const std::string trace = (d / "trace.safetensors").string();
  const std::string out = (d / "apple.png").string();
  CliRun r = run("infer --model_path " + kDir + " --mode generate --prompt 'A red apple on a wooden table.' --seed 12345 "
              "--parallel_size 2 --output " + out + " --trace " + trace);
  ASSERT_EQ(r.rc, 0) << r.err;
  for (const auto& p : {out, (d / "apple_1.png").string()}) {
    ASSERT_TRUE(fs::exists(p)) << p;
    auto img = omni::io::read_image(p);
    EXPECT_EQ(img.width, 384);
    EXPECT_EQ(img.height, 384);
  }
  auto t = Checkpoint::open(trace);
  auto golden = Checkpoint::open(kDir + "/t2i.safetensors");
  EXPECT_TRUE(torch::equal(t.get("cfg_input_tokens"), golden.get("cfg_input_tokens")));
  auto raw0 = golden.get("raw_logits_steps")[0];
  EXPECT_LT((t.get("raw_logits_first") - raw0).abs().max().item<float>(), 1e-4);
  EXPECT_EQ(t.info("generated_tokens").shape, (std::vector<int64_t>{2, 576}));
  EXPECT_EQ(t.info("decoded").shape, (std::vector<int64_t>{2, 3, 384, 384}));
  // With the official seed, the sampled tokens are the official ones (same libtorch RNG calls).
  const auto same = t.get("generated_tokens").eq(golden.get("generated_tokens")).sum().item<int64_t>();
  EXPECT_EQ(same, 2 * 576);
  if (same == 2 * 576) {
    auto png = omni::io::read_image(out);
    auto ref = omni::io::read_image(kDir + "/t2i_image_0.png");
    int worst = 0;
    for (size_t i = 0; i < png.rgb.size(); ++i) worst = std::max(worst, std::abs(int(png.rgb[i]) - int(ref.rgb[i])));
    EXPECT_LE(worst, 1) << "PNG differs from the official image by " << worst;
  }
}

TEST(CliJanus, ErrorsAreOneLineAndNonZero) {
  auto check = [](const std::string& args, const std::string& fragment) {
    CliRun r = run(args);
    EXPECT_NE(r.rc, 0) << args;
    EXPECT_EQ(r.out, "") << args;
    EXPECT_LT(r.rc, 128) << "crashed: " << args;
    EXPECT_EQ(r.err.rfind("error: ", 0), 0u) << r.err;
    EXPECT_NE(r.err.find(fragment), std::string::npos) << r.err;
    EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
  };
  check("infer --model_path " + kDir + " --mode understand --image /nonexistent.png --prompt hi", "/nonexistent.png: image file not found");
  check("infer --model_path /nonexistent --prompt hi", "/nonexistent");
  check("infer --model_path " + kDir + " --model_type nosuch --prompt hi", "model type 'nosuch': unknown (known: janus");
  check("infer --model_path " + kDir + " --mode edit --prompt hi", "not supported by janus");
  check("infer --model_path " + kDir + " --mode generate --prompt hi", "--output: required");
  auto d = tmpdir("bad");
  std::ofstream(d / "notimage.png") << "this is not a png";
  check("infer --model_path " + kDir + " --mode understand --image " + (d / "notimage.png").string() + " --prompt hi",
        "notimage.png");
  check("infer --model_path " + kDir + " --mode understand --image " + kDir + "/test_image.png --prompt 'a <image> b <image>'",
        "2 <image> marker(s) but 1 --image");
  // Flags are scoped to the family and mode: one line naming the flag and the family.
  check("infer --model_path " + kDir + " --mode understand --prompt hi --steps 5", "--steps: not taken by janus --mode understand");
  check("infer --model_path " + kDir + " --mode generate --prompt hi --steps 5 --output x.png", "--steps: not taken by janus");
  check("infer --model_path " + kDir + " --mode understand --prompt hi --cfg_weight 3", "--cfg_weight: not taken by janus");
  check("infer --model_path " + kDir + " --mode understand --prompt hi --think", "--think: not taken by janus");
  check("infer --model_path " + kDir + " --mode generate --prompt hi --parallel_size x --output " + (d / "x.png").string(),
        "--parallel_size");
  check("infer --model_path " + kDir + " --prompt hi --max_new_tokens x", "--max_new_tokens");
  check("infer --model_path " + kDir + " --prompt hi --no_such_flag 1", "--no_such_flag");
  check("infer --model_path " + kDir + " --prompt hi --device tpu", "--device tpu");
  check("infer --model_path " + kDir + " --prompt hi --dtype int3", "--dtype int3: expected fp32, bf16, fp16 or int8");
  // outputs never replace an input or a device
  check("infer --model_path " + kDir + " --prompt hi --trace " + kDir + "/model.safetensors", "is one of this run's inputs");
  check("infer --model_path " + kDir + " --mode generate --prompt hi --output " + kDir + "/test_image.png",
        "is one of this run's inputs");
  check("infer --model_path " + kDir + " --prompt hi --trace /dev/full", "is not a regular file");
  check("infer --model_path " + kDir + " --mode generate --prompt hi --output " + (d / "o.png").string() + " --trace " +
            (d / "." / "o.png").string(),
        "is also the --output image");
  check("infer --model_path " + kDir + " --prompt hi --threads 100000", "--threads 100000: at most 1024 threads");
  {
    const char* prev = std::getenv("OMP_NUM_THREADS");
    const std::string saved = prev ? prev : "";
    setenv("OMP_NUM_THREADS", "5000", 1);  // inherited by the child
    check("infer --model_path " + kDir + " --prompt hi", "OMP_NUM_THREADS=5000: at most 1024 threads");
    if (prev) setenv("OMP_NUM_THREADS", saved.c_str(), 1);
    else unsetenv("OMP_NUM_THREADS");
  }
  check("infer --model_path " + kDir + " --prompt hi --temperature -1", "--temperature: must be >= 0");
  check("infer --model_path " + kDir + " --prompt hi --temperature nan", "--temperature nan: expected a finite number");
  check("infer --model_path " + kDir + " --prompt hi --top_p inf", "--top_p inf: expected a finite number");
  check("infer --model_path " + kDir + " --prompt hi --seed -1", "--seed -1: expected an integer in [0, 18446744073709551615]");
  check("infer --model_path " + kDir + " --prompt hi --seed 18446744073709551616", "--seed 18446744073709551616");
  check("infer --model_path " + kDir + " --mode generate --prompt hi --cfg_weight nan --output " + (d / "x.png").string(),
        "--cfg_weight 'nan': expected a finite number");
  check("infer --model_path " + kDir + " --prompt hi --dtype fp16", "--dtype fp16: not on the CPU");
  {  // a prompt longer than the model's context (16384 positions): ~72k tokens
    std::string long_prompt;
    for (int i = 0; i < 3000; ++i) long_prompt += "the cat sat on the mat. ";
    check("--log warn infer --model_path " + kDir + " --image " + kDir + "/test_image.png --prompt '" + long_prompt + "'",
          "the model's context is 16384 (max_position_embeddings)");
  }
  // a batch whose KV cache could never fit (~580 GiB here) is refused, not left to the OOM killer
  check("--log warn infer --model_path " + kDir + " --mode generate --prompt hi --parallel_size 1000000 --output " +
            (d / "x.png").string(),
        "kv cache: 2000000 sequence(s) of");
  check("infer --model_path " + kDir + " --prompt hi --top_p 0", "--top_p: must be in (0, 1]");
  check("infer --model_path " + kDir + " --mode generate --prompt hi --output " + d.string(), "is a directory");
}
