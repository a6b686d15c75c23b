// --dtype bf16 and --dtype int8 on the CPU, per family and mode: the traced intermediates of a bf16
// run and of an int8 run (int8 decoder-layer weights, fp32 compute) stay within the tolerances below
// of the fp32 run on the same inputs and draws, and the CLI writes its outputs.
// With OMNI_TEST_DEVICE=cuda (scripts/gpu_check.sh) the same comparisons run --device cuda in fp32
// and in bf16 against the CPU fp32 run.
// Tolerances are relative L2 errors ||bf16 - fp32|| / ||fp32||: bf16 keeps 8 bits of mantissa
// (2^-9 = 0.2% per rounding); a few dozen roundings through the tiny fixtures' layers stay well
// under the bounds below; int8 rounds each weight to 1/254 of its row's largest (~0.4% of a
// weight's spread) once, an error of the same size. A wrong cast (a weight left unconverted, a mask in the wrong
// dtype, the flow state rounded every step) lands far above them.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>

#include "cli_test_util.h"
#include "omni/io/checkpoint_torch.h"
#include "omni/io/image.h"
#include "omni/io/trace_torch.h"
#include "omni/nn/cpu_bf16.h"
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

const std::string& test_device() {
  static const std::string d = std::getenv("OMNI_TEST_DEVICE") ? std::getenv("OMNI_TEST_DEVICE") : "cpu";
  return d;
}

// The reference run (cpu fp32) and the runs under test: cpu bf16, or the test device in fp32 and bf16.
struct Runs {
  Checkpoint ref;
  std::vector<std::pair<std::string, Checkpoint>> runs;  // label -> trace
};

Runs runs_of(const std::string& name, const std::string& args) {
  auto d = tmpdir("bf16_" + name);
  // {device, dtype, the bf16 route of a CPU without bf16 GEMM kernels forced (OMNI_NO_BF16_GEMM=1)}:
  // where this CPU has the kernels the plain bf16 run computes in bf16, so the other route runs too
  struct Config {
    std::string dev, dt;
    bool no_bf16_gemm = false;
  };
  const bool native_bf16 = omni::nn::cpu_has_bf16_gemm();
  std::vector<Config> configs = {{"cpu", "fp32"}};
  if (test_device() == "cpu") configs.insert(configs.end(), {{"cpu", "bf16"}, {"cpu", "int8"}});
  else configs.insert(configs.end(), {{test_device(), "fp32"}, {test_device(), "bf16"}});
  if (test_device() == "cpu" && native_bf16) configs.push_back({"cpu", "bf16", true});
  std::vector<std::pair<std::string, Checkpoint>> traces;
  for (const auto& [dev, dt, no_bf16_gemm] : configs) {
    const std::string label = dev + "_" + dt + (no_bf16_gemm ? "_fp32_compute" : "");
    const std::string trace = (d / (label + ".safetensors")).string();
    const std::string out_png = (d / (label + ".png")).string();
    if (no_bf16_gemm) setenv("OMNI_NO_BF16_GEMM", "1", 1);
    CliRun r = run("infer " + args + " --device " + dev + " --dtype " + dt + " --trace " + trace +
                   (args.find("--mode understand") == std::string::npos ? " --output " + out_png : ""));
    unsetenv("OMNI_NO_BF16_GEMM");
    EXPECT_EQ(r.rc, 0) << label << ": " << r.err;
    EXPECT_NE(r.err.find(" on " + dev + " in " + dt), std::string::npos) << r.err;
    // bf16 weights over fp32 compute exactly where the CPU has no bf16 GEMM kernels
    const bool fp32_compute = dev == "cpu" && dt == "bf16" && (no_bf16_gemm || !native_bf16);
    EXPECT_EQ(r.err.find("fp32 compute") != std::string::npos, fp32_compute) << label << ": " << r.err;
    // the decoder's linears and those of the vision towers (Janus, BAGEL; U1 has none)
    EXPECT_EQ(r.err.find("tower linears stored in bf16, computed in fp32") != std::string::npos, fp32_compute)
        << label << ": " << r.err;
    EXPECT_EQ(r.err.find(" 0 decoder"), std::string::npos) << r.err;
    if (name.rfind("u1", 0) != 0) EXPECT_EQ(r.err.find(" 0 tower"), std::string::npos) << r.err;
    if (args.find("--mode understand") == std::string::npos) {
      EXPECT_TRUE(fs::exists(out_png)) << out_png;
    } else {
      EXPECT_FALSE(r.out.empty());
    }
    traces.emplace_back(label, Checkpoint::open(trace));
  }
  Runs out{traces[0].second, {}};
  out.runs.assign(traces.begin() + 1, traces.end());
  return out;
}

void expect_rel(const Runs& t, const std::string& name, double tol) {
  for (const auto& [label, trace] : t.runs) {
    const double e = rel_l2(trace.get(name), t.ref.get(name));
    std::printf("  %s vs cpu_fp32 %-16s rel L2 %.2e (tol %.0e)\n", label.c_str(), name.c_str(), e, tol);
    EXPECT_LT(e, tol) << label << " " << name;
  }
}
// The int8 run did quantize: its `name` differs from fp32 (an exact match would mean --dtype int8
// ran the float weights).
void expect_quantized(const Runs& t, const std::string& name) {
  for (const auto& [label, trace] : t.runs)
    if (label == "cpu_int8") EXPECT_GT(rel_l2(trace.get(name), t.ref.get(name)), 1e-4) << name;
}
}  // namespace

TEST(CliBf16, JanusUnderstandAndGenerate) {
  auto u = runs_of("janus_und", "--model_path " + kJanus + " --mode understand --image " + kJanus +
                                 "/test_image.png --prompt 'Describe this image.' --max_new_tokens 4");
  EXPECT_TRUE(torch::equal(u.ref.get("input_ids"), u.runs[0].second.get("input_ids")));
  expect_rel(u, "vision_features", 3e-2);  // measured 7.5e-3
  expect_rel(u, "inputs_embeds", 3e-2);    // 6.0e-3
  expect_rel(u, "logits_last", 3e-2);      // 6.3e-3 (int8 9.8e-3)
  expect_quantized(u, "logits_last");
  auto g = runs_of("janus_gen", "--model_path " + kJanus + " --mode generate --prompt 'A red apple.' --seed 12345");
  expect_rel(g, "raw_logits_first", 3e-2);  // 7.7e-3
  EXPECT_EQ(g.runs[0].second.info("decoded").shape, (std::vector<int64_t>{1, 3, 384, 384}));
}

TEST(CliBf16, BagelUnderstandGenerateEdit) {
  auto u = runs_of("bagel_und", "--model_path " + kBagel + " --mode understand --image " + kBagel +
                                 "/und_image.png --prompt 'Is there a circle?' --max_new_tokens 4");
  expect_rel(u, "vit_tokens", 1e-6);  // preprocessing is float32 either way
  expect_rel(u, "logits_last", 3e-2);  // 4.9e-3 (int8 6.7e-3)
  expect_quantized(u, "logits_last");
  // The same draws in every run, injected (a CUDA generator draws other numbers than the CPU one).
  auto d = tmpdir("bf16_noise");
  auto t2i = Checkpoint::open(kBagel + "/t2i_cfgimg1.0.safetensors"), ed = Checkpoint::open(kBagel + "/edit.safetensors");
  const std::string t2i_noise = (d / "t2i.safetensors").string(), edit_noise = (d / "edit.safetensors").string();
  omni::io::save_safetensors(t2i_noise, {{"init_noise", t2i.get("init_noise")}});
  omni::io::save_safetensors(edit_noise, {{"init_noise", ed.get("init_noise")}, {"vae_posterior_eps", ed.get("vae_posterior_eps")}});
  auto g = runs_of("bagel_gen", "--model_path " + kBagel + " --mode generate --prompt 'a red circle on blue' "
                                "--height 64 --width 96 --steps 10 --init_noise " + t2i_noise);
  EXPECT_TRUE(torch::equal(g.ref.get("init_noise"), g.runs[0].second.get("init_noise")));
  EXPECT_EQ(g.runs[0].second.info("init_noise").dtype, omni::DType::F32);  // the flow state stays float32
  expect_rel(g, "velocity_first", 1e-1);  // 2.5e-2
  expect_rel(g, "latent_final", 3e-2);    // 2.3e-3
  expect_rel(g, "decoded", 3e-2);         // 5.1e-3
  auto e = runs_of("bagel_edit", "--model_path " + kBagel + " --mode edit --image " + kBagel +
                                     "/edit_image.png --prompt 'make the disc green' --steps 10 --init_noise " + edit_noise);
  expect_rel(e, "velocity_first", 1e-1);  // 3.6e-2 (text 4 x image 2 guidance)
  expect_rel(e, "latent_final", 3e-2);    // 4.3e-3
  expect_rel(e, "decoded", 3e-2);         // 1.0e-2
  // ThinkMorph's interleaved loop in bf16 (sampled text: checked for running to the end)
  CliRun r = run("infer --model_path " + kBagel + " --model_type thinkmorph --device " + test_device() +
                 " --dtype bf16 --mode understand --image " +
                 kBagel + "/und_image.png --prompt 'Where is the circle?' --max_new_tokens 6 --steps 3 --seed 7 --output " +
                 (d / "tm.png").string());
  EXPECT_EQ(r.rc, 0) << r.err;
  EXPECT_NE(r.err.find("thinkmorph on " + test_device()), std::string::npos) << r.err;
}

TEST(CliBf16, U1UnderstandGenerateEdit) {
  const std::string m = std::string(OMNI_FIXTURES) + "/u1_tiny";
  auto u = runs_of("u1_und", "--model_path " + m + " --mode understand --image " + m +
                              "/und_image.png --prompt 'Which shapes do you see?' --max_new_tokens 4");
  expect_rel(u, "pixel_values", 1e-6);  // preprocessing is float32 either way
  expect_rel(u, "logits_last", 3e-2);  // 5.5e-3 (int8 7.4e-3)
  expect_quantized(u, "logits_last");
  // the official draws injected (a CUDA generator draws other numbers than the CPU one)
  auto g = runs_of("u1_gen", "--model_path " + m + " --mode generate --prompt 'A green teapot.' --width 192 "
                             "--height 128 --steps 5 --init_noise " + m + "/t2i.safetensors");
  EXPECT_EQ(g.runs[0].second.info("x_init").dtype, omni::DType::F32);  // the flow state stays float32
  expect_rel(g, "velocity_first", 1e-1);  // 1.3e-3
  expect_rel(g, "final", 6e-2);  // 2.0e-2: x-prediction divides by max(1 - t, 0.02) near the end
  expect_rel(g, "decoded", 3e-2);  // 2.7e-3
  auto e = runs_of("u1_edit", "--model_path " + m + " --mode edit --image " + m + "/edit_image.png --prompt 'Turn the "
                              "sky purple.' --width 64 --height 160 --steps 4 --cfg_img_scale 2 --cfg_norm channel "
                              "--init_noise " + m + "/edit.safetensors");
  expect_rel(e, "velocity_first", 1e-1);  // 1.8e-3
  expect_rel(e, "final", 6e-2);  // 2.0e-2
  expect_rel(e, "decoded", 3e-2);  // 2.5e-3
}
