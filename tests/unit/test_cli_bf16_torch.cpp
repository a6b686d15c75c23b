// --dtype bf16 on the CPU, per family and mode: the traced intermediates of a bf16 run stay within
// bf16 tolerances of the fp32 run on the same inputs and draws, and the CLI writes its outputs.
// Tolerances are relative L2 errors ||bf16 - fp32|| / ||fp32||: bf16 keeps 8 bits of mantissa
// (2^-9 = 0.2% per rounding); a few dozen roundings through the tiny fixtures' layers stay well
// under the bounds below, and a wrong cast (a weight left unconverted, a mask in the wrong
// dtype, the flow state rounded every step) lands far above them.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cstdio>
#include <filesystem>

#include "cli_test_util.h"
#include "omni/io/checkpoint_torch.h"
#include "omni/io/image.h"
#include "omni/io/trace_torch.h"
#include "test_paths.h"

namespace fs = std::filesystem;
using omni::io::Checkpoint;
using omni::testing::CliRun;
using omni::testing::run;
using omni::testing::tmpdir;

namespace {
const std::string kJanus = std::string(OMNI_FIXTURES) + "/janus_tiny";
const std::string kBagel = std::string(OMNI_FIXTURES) + "/bagel_tiny";

double rel_l2(const torch::Tensor& got, const torch::Tensor& want) {
  auto g = got.to(torch::kFloat64), w = want.to(torch::kFloat64);
  return ((g - w).norm() / w.norm().clamp_min(1e-30)).item<double>();
}

// Runs `args` with --dtype fp32 and bf16, each with its own trace; returns both traces.
std::pair<Checkpoint, Checkpoint> both(const std::string& name, const std::string& args) {
  auto d = tmpdir("bf16_" + name);
  std::vector<Checkpoint> out;
  for (const char* dt : {"fp32", "bf16"}) {
    const std::string trace = (d / (std::string(dt) + ".safetensors")).string();
    const std::string out_png = (d / (std::string(dt) + ".png")).string();
    CliRun r = run("infer " + args + " --dtype " + dt + " --trace " + trace +
                   (args.find("--mode understand") == std::string::npos ? " --output " + out_png : ""));
    EXPECT_EQ(r.rc, 0) << dt << ": " << r.err;
    EXPECT_NE(r.err.find(std::string("on cpu in ") + dt), std::string::npos) << r.err;
    if (args.find("--mode understand") == std::string::npos) {
      EXPECT_TRUE(fs::exists(out_png)) << out_png;
    } else {
      EXPECT_FALSE(r.out.empty());
    }
    out.push_back(Checkpoint::open(trace));
  }
  return {out[0], out[1]};
}

void expect_rel(const std::pair<Checkpoint, Checkpoint>& t, const std::string& name, double tol) {
  const double e = rel_l2(t.second.get(name), t.first.get(name));
  std::printf("  bf16 vs fp32 %-16s rel L2 %.2e (tol %.0e)\n", name.c_str(), e, tol);
  EXPECT_LT(e, tol) << name;
}
}  // namespace

TEST(CliBf16, JanusUnderstandAndGenerate) {
  auto u = both("janus_und", "--model_path " + kJanus + " --mode understand --image " + kJanus +
                                 "/test_image.png --prompt 'Describe this image.' --max_new_tokens 4");
  EXPECT_TRUE(torch::equal(u.first.get("input_ids"), u.second.get("input_ids")));
  expect_rel(u, "vision_features", 3e-2);  // measured 7.5e-3
  expect_rel(u, "inputs_embeds", 3e-2);    // 6.0e-3
  expect_rel(u, "logits_last", 3e-2);      // 6.3e-3
  auto g = both("janus_gen", "--model_path " + kJanus + " --mode generate --prompt 'A red apple.' --seed 12345");
  expect_rel(g, "raw_logits_first", 3e-2);  // 7.7e-3
  EXPECT_EQ(g.second.info("decoded").shape, (std::vector<int64_t>{1, 3, 384, 384}));
}

TEST(CliBf16, BagelUnderstandGenerateEdit) {
  auto u = both("bagel_und", "--model_path " + kBagel + " --mode understand --image " + kBagel +
                                 "/und_image.png --prompt 'Is there a circle?' --max_new_tokens 4");
  expect_rel(u, "vit_tokens", 1e-6);  // preprocessing is float32 either way
  expect_rel(u, "logits_last", 3e-2);  // 4.9e-3
  // The same draws (--seed) in both dtypes: the flow state and the draws stay float32.
  auto g = both("bagel_gen", "--model_path " + kBagel + " --mode generate --prompt 'a red circle on blue' "
                             "--height 64 --width 96 --steps 10 --seed 2002");
  EXPECT_TRUE(torch::equal(g.first.get("init_noise"), g.second.get("init_noise")));
  EXPECT_EQ(g.second.info("init_noise").dtype, omni::DType::F32);
  // CFG (text scale 4) amplifies the branch differences: v = v_text + 4 (v_cond - v_text)
  expect_rel(g, "velocity_first", 1e-1);  // 2.5e-2
  expect_rel(g, "latent_final", 3e-2);    // 2.3e-3
  expect_rel(g, "decoded", 3e-2);         // 5.1e-3
  auto e = both("bagel_edit", "--model_path " + kBagel + " --mode edit --image " + kBagel +
                                  "/edit_image.png --prompt 'make the disc green' --steps 10 --seed 3003");
  expect_rel(e, "velocity_first", 1e-1);  // 3.6e-2 (text 4 x image 2 guidance)
  expect_rel(e, "latent_final", 3e-2);    // 4.3e-3
  expect_rel(e, "decoded", 3e-2);         // 1.0e-2
  // ThinkMorph's interleaved loop in bf16 (sampled text: checked for running to the end)
  auto d = tmpdir("bf16_tm");
  CliRun r = run("infer --model_path " + kBagel + " --model_type thinkmorph --dtype bf16 --mode understand --image " +
                 kBagel + "/und_image.png --prompt 'Where is the circle?' --max_new_tokens 6 --steps 3 --seed 7 --output " +
                 (d / "tm.png").string());
  EXPECT_EQ(r.rc, 0) << r.err;
  EXPECT_NE(r.err.find("thinkmorph on cpu in bf16"), std::string::npos) << r.err;
}
