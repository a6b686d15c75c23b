// The omni CLI end to end on the tiny BAGEL fixture: understand / generate / edit / think, checked
// against the official outputs through --trace, detection (BAGEL vs ThinkMorph) and the errors.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

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
const std::string kDir = std::string(OMNI_FIXTURES) + "/bagel_tiny";

double max_abs(const torch::Tensor& a, const torch::Tensor& b) { return (a - b).abs().max().item<double>(); }

// PNG vs the official uint8 image: within 1 LSB, >= 99% exact.
void expect_png_close(const std::string& png, const torch::Tensor& want_hwc) {
  auto img = omni::io::read_image(png);
  ASSERT_EQ(img.height, want_hwc.size(0));
  ASSERT_EQ(img.width, want_hwc.size(1));
  auto got = torch::from_blob(img.rgb.data(), {img.height, img.width, 3}, torch::kUInt8).to(torch::kInt32);
  auto d = (got - want_hwc.to(torch::kInt32)).abs();
  EXPECT_LE(d.max().item<int>(), 1);
  EXPECT_GE((d == 0).to(torch::kFloat64).mean().item<double>(), 0.99);
}

// A copy of the tiny BAGEL checkpoint with the weights named model.safetensors (what BAGEL's own
// trainer writes), plus optional extra files (name -> contents).
fs::path copy_as_model_safetensors(const std::string& name, const std::vector<std::pair<std::string, std::string>>& extra = {}) {
  auto d = tmpdir(name);
  for (const auto& e : fs::directory_iterator(kDir)) {
    std::string fname = e.path().filename().string();
    if (fname == "ema.safetensors") fname = "model.safetensors";
    fs::copy_file(e.path(), d / fname, fs::copy_options::overwrite_existing);
  }
  for (const auto& [fname, text] : extra) std::ofstream(d / fname) << text;
  return d;
}
}  // namespace

TEST(CliBagel, UnderstandGivesTheOfficialGreedyTokens) {
  auto d = tmpdir("bagel_und");
  const std::string trace = (d / "t.safetensors").string();
  // model_type detected from the directory (ema.safetensors -> bagel)
  CliRun r = run("infer --model_path " + kDir + " --mode understand --image " + kDir +
                 "/und_image.png --prompt 'Is there a circle?' --max_new_tokens 8 --trace " + trace);
  ASSERT_EQ(r.rc, 0) << r.err;
  auto t = Checkpoint::open(trace);
  auto golden = Checkpoint::open(kDir + "/understanding.safetensors");
  auto want = golden.get("greedy_tokens").narrow(0, 1, 8).reshape({1, -1});  // without the start token
  EXPECT_TRUE(torch::equal(t.get("generated_ids"), want)) << t.get("generated_ids") << " vs " << want;
  EXPECT_LT(max_abs(t.get("logits_last")[0], golden.get("prefill_last_logits")), 1e-4);
  EXPECT_LT(max_abs(t.get("vit_tokens"), golden.get("packed_vit_tokens")), 1e-6);
  EXPECT_FALSE(r.out.empty());
  EXPECT_EQ(r.out.back(), '\n');
}

TEST(CliBagel, GenerateWithSeedReproducesTheOfficialImage) {
  auto d = tmpdir("bagel_t2i");
  const std::string trace = (d / "t.safetensors").string(), out = (d / "t2i.png").string();
  CliRun r = run("infer --model_path " + kDir + " --model_type bagel --mode generate --prompt 'a red circle on blue' "
                 "--height 64 --width 96 --steps 10 --cfg_text_scale 4 --cfg_img_scale 1.0 --cfg_interval 0.4,1.0 "
                 "--timestep_shift 3 --cfg_renorm_type global --cfg_renorm_min 0 --seed 2002 --output " + out +
                 " --trace " + trace);
  ASSERT_EQ(r.rc, 0) << r.err;
  auto t = Checkpoint::open(trace);
  auto golden = Checkpoint::open(kDir + "/t2i_cfgimg1.0.safetensors");
  // torch.manual_seed(2002); torch.randn(24, 64): the same libtorch generator calls.
  EXPECT_TRUE(torch::equal(t.get("init_noise"), golden.get("init_noise")));
  EXPECT_LT(max_abs(t.get("velocity_first"), golden.get("v_first_step")), 1e-5);
  EXPECT_LT(max_abs(t.get("latent_final"), golden.get("final_latent_packed")), 1e-4);
  EXPECT_LT(max_abs(t.get("decoded"), golden.get("decoded")), 2e-4);
  expect_png_close(out, golden.get("image_u8"));
}

TEST(CliBagel, EditWithInjectedNoiseReproducesTheOfficialEdit) {
  auto d = tmpdir("bagel_edit");
  const std::string trace = (d / "t.safetensors").string(), out = (d / "edit.png").string();
  auto golden = Checkpoint::open(kDir + "/edit.safetensors");
  const std::string noise = (d / "noise.safetensors").string();
  omni::io::save_safetensors(noise, {{"init_noise", golden.get("init_noise")},
                                      {"vae_posterior_eps", golden.get("vae_posterior_eps")}});
  // the edit defaults are the official ones: cfg_text 4, cfg_img 2, interval [0, 1], text_channel
  CliRun r = run("infer --model_path " + kDir + " --mode edit --image " + kDir +
                 "/edit_image.png --prompt 'make the disc green' --steps 10 --init_noise " + noise + " --output " + out +
                 " --trace " + trace);
  ASSERT_EQ(r.rc, 0) << r.err;
  auto t = Checkpoint::open(trace);
  EXPECT_LT(max_abs(t.get("vit_tokens"), golden.get("packed_vit_tokens")), 1e-6);
  EXPECT_LT(max_abs(t.get("velocity_first"), golden.get("v_first_step")), 1e-5);
  EXPECT_LT(max_abs(t.get("latent_final"), golden.get("final_latent_packed")), 1e-4);
  EXPECT_LT(max_abs(t.get("decoded"), golden.get("decoded")), 2e-4);
  expect_png_close(out, golden.get("image_out_u8"));
  // --seed 3003 draws the same two tensors in the same order as the official call
  const std::string trace2 = (d / "t2.safetensors").string();
  r = run("infer --model_path " + kDir + " --mode edit --image " + kDir +
          "/edit_image.png --prompt 'make the disc green' --steps 10 --seed 3003 --output " + (d / "e2.png").string() +
          " --trace " + trace2);
  ASSERT_EQ(r.rc, 0) << r.err;
  EXPECT_TRUE(torch::equal(Checkpoint::open(trace2).get("init_noise"), golden.get("init_noise")));
  EXPECT_LT(max_abs(Checkpoint::open(trace2).get("latent_final"), golden.get("final_latent_packed")), 1e-4);
}

TEST(CliBagel, ThinkPlansThenDraws) {
  auto d = tmpdir("bagel_think");
  const std::string out = (d / "think.png").string(), trace = (d / "t.safetensors").string();
  CliRun r = run("infer --model_path " + kDir + " --mode generate --think --max_new_tokens 6 --prompt 'a red circle' "
                 "--height 32 --width 32 --steps 3 --seed 1 --output " + out + " --trace " + trace);
  ASSERT_EQ(r.rc, 0) << r.err;
  auto t = Checkpoint::open(trace);
  EXPECT_EQ(t.info("generated_ids").shape.size(), 2u);  // the plan was generated
  EXPECT_LE(t.info("generated_ids").shape[1], 6);
  auto img = omni::io::read_image(out);
  EXPECT_EQ(img.width, 32);
  EXPECT_EQ(img.height, 32);
}

// BAGEL vs ThinkMorph is what the checkpoint says, never the weights file name.
TEST(CliBagel, FineTunedBagelWithModelSafetensorsLoadsAsBagel) {
  auto dir = copy_as_model_safetensors("finetuned_bagel");
  const std::string args = " --mode understand --image " + kDir +
                           "/und_image.png --prompt 'Where is the circle?' --max_new_tokens 6 --seed 7";
  CliRun r = run("infer --model_path " + dir.string() + args);
  ASSERT_EQ(r.rc, 0) << r.err;
  EXPECT_NE(r.err.find("bagel on cpu"), std::string::npos) << r.err;
  EXPECT_EQ(r.err.find("interleaved reasoning"), std::string::npos) << r.err;
  // --model_type always wins: the same directory runs ThinkMorph's loop.
  auto d = tmpdir("finetuned_as_tm");
  r = run("infer --model_path " + dir.string() + " --model_type thinkmorph" + args + " --steps 3 --output " +
          (d / "tm.png").string());
  ASSERT_EQ(r.rc, 0) << r.err;
  EXPECT_NE(r.err.find("thinkmorph: interleaved reasoning"), std::string::npos) << r.err;
  EXPECT_FALSE(r.out.empty());
}

TEST(CliBagel, ThinkMorphDetectedFromItsModelCardOrOurMarker) {
  const std::string args = " --mode understand --image " + kDir +
                           "/und_image.png --prompt 'Where is the circle?' --max_new_tokens 6 --steps 3 --seed 7";
  // ThinkMorph-7B's model card front matter names it (library_name: ThinkMorph-7B).
  auto card = copy_as_model_safetensors(
      "tm_card", {{"README.md", "---\nlicense: apache-2.0\nlibrary_name: ThinkMorph-7B\npipeline_tag: any-to-any\n---\n# ThinkMorph\n"}});
  auto d = tmpdir("tm_runs");
  CliRun r = run("infer --model_path " + card.string() + args + " --output " + (d / "a.png").string());
  ASSERT_EQ(r.rc, 0) << r.err;
  EXPECT_NE(r.err.find("thinkmorph: interleaved reasoning"), std::string::npos) << r.err;
  // A card that only mentions ThinkMorph below the front matter says nothing about this checkpoint.
  auto prose = copy_as_model_safetensors("tm_prose", {{"README.md", "---\nlibrary_name: bagel-mot\n---\nCompare ThinkMorph.\n"}});
  r = run("infer --model_path " + prose.string() + " --mode understand --image " + kDir +
          "/und_image.png --prompt 'Where is the circle?' --max_new_tokens 6");
  ASSERT_EQ(r.rc, 0) << r.err;
  EXPECT_NE(r.err.find("bagel on cpu"), std::string::npos) << r.err;
  // Our exports' marker: bagel_config.json "model_type" (here on an ema.safetensors layout).
  auto marked = tmpdir("tm_marker");
  for (const auto& e : fs::directory_iterator(kDir)) fs::copy_file(e.path(), marked / e.path().filename(), fs::copy_options::overwrite_existing);
  auto j = nlohmann::json::parse(std::ifstream(kDir + "/bagel_config.json"));
  j["model_type"] = "thinkmorph";
  std::ofstream(marked / "bagel_config.json") << j.dump(2);
  r = run("infer --model_path " + marked.string() + args + " --output " + (d / "b.png").string());
  ASSERT_EQ(r.rc, 0) << r.err;
  EXPECT_NE(r.err.find("thinkmorph: interleaved reasoning"), std::string::npos) << r.err;
  j["model_type"] = "bagle";
  std::ofstream(marked / "bagel_config.json") << j.dump(2);
  r = run("infer --model_path " + marked.string() + args);
  EXPECT_EQ(r.rc, 1);
  EXPECT_EQ(r.err.find('\n'), r.err.size() - 1) << r.err;
  EXPECT_NE(r.err.find("model_type must be"), std::string::npos) << r.err;
}

TEST(CliBagel, BadInputsGiveOneClearError) {
  auto d = tmpdir("bagel_err");
  CliRun r = run("infer --model_path " + kDir + " --mode generate --prompt x --height 60 --width 64 --steps 3 --output " +
                 (d / "x.png").string());
  EXPECT_EQ(r.rc, 1);
  EXPECT_NE(r.err.find("multiples of 16"), std::string::npos) << r.err;
  r = run("infer --model_path " + kDir + " --mode edit --prompt x --output " + (d / "x.png").string());
  EXPECT_EQ(r.rc, 1);
  EXPECT_NE(r.err.find("exactly one input image"), std::string::npos) << r.err;
  r = run("infer --model_path " + kDir + " --mode generate --prompt x --cfg_renorm_type local --output " +
          (d / "x.png").string());
  EXPECT_EQ(r.rc, 1);
  EXPECT_NE(r.err.find("--cfg_renorm_type"), std::string::npos) << r.err;
  r = run("infer --model_path " + kDir + " --mode generate --prompt x --height 32 --width 32 --steps 3 --init_noise " +
          kDir + "/ae.safetensors --output " + (d / "x.png").string());
  EXPECT_EQ(r.rc, 1);
  EXPECT_NE(r.err.find("init_noise"), std::string::npos) << r.err;
  r = run("infer --model_path " + kDir + " --mode understand --prompt 'two <image> <image>' --image " + kDir +
          "/und_image.png");
  EXPECT_EQ(r.rc, 1);
  EXPECT_NE(r.err.find("marker"), std::string::npos) << r.err;
  r = run("infer --model_path " + kDir + " --mode understand --prompt hi --top_p 0.9");
  EXPECT_EQ(r.rc, 1);
  EXPECT_NE(r.err.find("--top_p: not taken by bagel --mode understand"), std::string::npos) << r.err;
  r = run("infer --model_path " + kDir + " --mode edit --image " + kDir + "/edit_image.png --prompt x --height 32 --output " +
          (d / "x.png").string());
  EXPECT_EQ(r.rc, 1);
  EXPECT_NE(r.err.find("--height: not taken by bagel --mode edit"), std::string::npos) << r.err;
  r = run("infer --model_path " + kDir + " --mode generate --prompt x --parallel_size 2 --output " + (d / "x.png").string());
  EXPECT_EQ(r.rc, 1);
  EXPECT_NE(r.err.find("--parallel_size: not taken by bagel"), std::string::npos) << r.err;
  // every error is one line
  EXPECT_EQ(r.err.find('\n'), r.err.size() - 1) << r.err;
}
