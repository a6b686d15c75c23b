// The trainer (omni/train/): config schema and overrides, the JSONL reader's errors, batching,
// schedules, and on the tiny Janus fixture: learning, freezing, exact resume, export.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "omni/core/error.h"
#include "omni/core/log.h"
#include "omni/core/memory.h"
#include "omni/io/checkpoint_torch.h"
#include "omni/train/batching.h"
#include "omni/train/config.h"
#include "omni/train/dataset.h"
#include "omni/train/metrics.h"
#include "omni/train/schedule.h"
#include "omni/train/trainer.h"
#include "test_paths.h"

using namespace omni;
namespace fs = std::filesystem;

namespace {

const std::string kJanus = std::string(OMNI_FIXTURES) + "/janus_tiny";
const std::string kImage = kJanus + "/test_image.png";

struct TempDir {
  fs::path path;
  TempDir() {
    path = fs::temp_directory_path() / ("omni_train_" + std::to_string(::getpid()) + "_" + std::to_string(counter()++));
    fs::remove_all(path);
    fs::create_directories(path);
  }
  ~TempDir() { fs::remove_all(path); }
  std::string operator/(const std::string& s) const { return (path / s).string(); }
  static int& counter() {
    static int c = 0;
    return c;
  }
};

void write(const std::string& path, const std::string& text) {
  std::ofstream(path) << text;
}

std::string error_of(const std::function<void()>& fn) {
  try {
    fn();
  } catch (const Error& e) {
    return e.what();
  }
  return "(no error)";
}

// Three samples next to a copy of the fixture image: understanding, text-to-image, text.
std::string write_data(const TempDir& d) {
  fs::copy_file(kImage, d / "a.png");
  const std::string jsonl = d / "data.jsonl";
  write(jsonl,
        R"({"id": "u", "images": ["a.png"], "conversations": [{"from": "human", "value": "<image>\nWhat is in the image?"}, {"from": "gpt", "value": "A gradient with shapes."}]}
{"id": "g", "images": ["a.png"], "conversations": [{"from": "human", "value": "A red apple on a wooden table."}, {"from": "gpt", "value": "<image>"}]}

{"id": "t", "messages": [{"role": "user", "content": "Say hi."}, {"role": "assistant", "content": "Hi there!"}]}
)");
  return jsonl;
}

train::Config janus_config(const TempDir& d, const std::string& out, std::vector<std::pair<std::string, std::string>> extra = {}) {
  const std::string yaml = d / "cfg.yaml";
  write(yaml, "model:\n  model_path: " + kJanus + "\ndata:\n  train_path: " + (d / "data.jsonl") +
                  "\ntrain:\n  output_dir: " + out + "\n  global_batch_size: 3\n  lr: 1.0e-2\n");
  return train::load_config(yaml, extra);
}

std::vector<nlohmann::json> metrics_of(const std::string& out) {
  std::vector<nlohmann::json> v;
  std::ifstream f(out + "/metrics.jsonl");
  std::string line;
  while (std::getline(f, line)) v.push_back(nlohmann::json::parse(line));
  return v;
}

// Quiet logs, and the CLI's allocator policy (training re-allocates the same activations every
// step; without it each one page-faults fresh pages, several times slower).
struct QuietLogs {
  LogLevel before = log_level();
  QuietLogs() {
    set_log_level(LogLevel::Error);
    keep_freed_memory_for_reuse();
  }
  ~QuietLogs() { set_log_level(before); }
};

}  // namespace

// ---- config ------------------------------------------------------------------------------------
TEST(TrainConfig, KeysTypesOverridesAndTheResolvedFileRoundTrip) {
  TempDir d;
  const std::string yaml = d / "c.yaml";
  write(yaml, "model: {model_path: m}\ndata: {train_path: [a.jsonl, b.jsonl]}\ntrain:\n  output_dir: o\n  lr: 3e-4\n"
              "  betas: [0.9, 0.95]\n  freeze_vit: yes\n  unfreeze_vit_layers: -2\n");
  auto c = train::load_config(yaml, {{"train.max_steps", "7"}, {"train.lr_scheduler", "cosine"}, {"data.max_seq_len", "1e3"}});
  EXPECT_EQ(c.data.train_path, (std::vector<std::string>{"a.jsonl", "b.jsonl"}));
  EXPECT_DOUBLE_EQ(c.train.lr, 3e-4);
  EXPECT_EQ(c.train.betas, (std::vector<double>{0.9, 0.95}));
  EXPECT_TRUE(c.train.freeze.freeze_vit);
  EXPECT_EQ(c.train.freeze.unfreeze_vit_layers, -2);
  EXPECT_EQ(c.train.max_steps, 7);
  EXPECT_EQ(c.train.lr_scheduler, "cosine");
  EXPECT_EQ(c.data.max_seq_len, 1000);
  EXPECT_TRUE(c.was_set("train.freeze_vit"));
  EXPECT_FALSE(c.was_set("train.freeze_vae"));

  // The resolved config reads back to the same values.
  write(d / "resolved.yaml", c.to_yaml());
  auto r = train::load_config(d / "resolved.yaml");
  EXPECT_EQ(r.to_yaml(), c.to_yaml());
  EXPECT_DOUBLE_EQ(r.train.lr, 3e-4);
  EXPECT_EQ(r.train.max_steps, 7);

  // Errors name the key, and an unknown key lists its section's keys.
  const auto unknown = error_of([&] { train::load_config(yaml, {{"train.lrr", "1"}}); });
  EXPECT_NE(unknown.find("--train.lrr: unknown key (valid train keys: output_dir, micro_batch_size"), std::string::npos) << unknown;
  write(d / "bad_key.yaml", "model: {model_path: m, flavour: x}\n");
  EXPECT_NE(error_of([&] { train::load_config(d / "bad_key.yaml"); }).find("model.flavour: unknown key (valid model keys: model_path)"),
            std::string::npos);
  EXPECT_NE(error_of([&] { train::load_config(yaml, {{"train.lr", "fast"}}); }).find("--train.lr: expected a number, got 'fast'"),
            std::string::npos);
  EXPECT_NE(error_of([&] { train::load_config(yaml, {{"train.dyn_bsz", "maybe"}}); }).find("expected true or false"),
            std::string::npos);
  EXPECT_NE(error_of([&] { train::load_config(yaml, {{"train.max_steps", "2.5"}}); }).find("expected an integer"),
            std::string::npos);
  EXPECT_NE(error_of([&] { train::load_config(yaml, {{"optim.lr", "1"}}); }).find("not a config key"), std::string::npos);
  EXPECT_NE(error_of([&] { train::load_config(yaml, {{"train.lr_scheduler", "step"}}); }).find("must be constant, cosine or linear"),
            std::string::npos);
  write(d / "no_out.yaml", "model: {model_path: m}\ndata: {train_path: a.jsonl}\n");
  EXPECT_NE(error_of([&] { train::load_config(d / "no_out.yaml"); }).find("train.output_dir: is required"), std::string::npos);
  write(d / "broken.yaml", "model: [unclosed\n");
  EXPECT_NE(error_of([&] { train::load_config(d / "broken.yaml"); }).find("not valid YAML"), std::string::npos);
  write(d / "section.yaml", "optimizer: {lr: 1}\n");
  EXPECT_NE(error_of([&] { train::load_config(d / "section.yaml"); }).find("unknown section 'optimizer'"), std::string::npos);
  EXPECT_NE(error_of([&] { train::load_config(d / "missing.yaml"); }).find("cannot read the config file"), std::string::npos);
  // a key or a section written twice is an error naming it and the second line, not a silent last-wins
  write(d / "twice.yaml", "model: {model_path: m}\ndata: {train_path: a.jsonl}\ntrain:\n  output_dir: o\n  lr: 1e-4\n  lr: 1e-3\n");
  const auto twice = error_of([&] { train::load_config(d / "twice.yaml"); });
  EXPECT_NE(twice.find("twice.yaml: train.lr: set twice (again on line 6)"), std::string::npos) << twice;
  write(d / "twice_sec.yaml", "model: {model_path: m}\ndata: {train_path: a.jsonl}\nmodel: {model_path: n}\n");
  const auto sec = error_of([&] { train::load_config(d / "twice_sec.yaml"); });
  EXPECT_NE(sec.find("twice_sec.yaml: model: section written twice (again on line 3)"), std::string::npos) << sec;
}

// ---- data --------------------------------------------------------------------------------------
TEST(TrainData, EachBadSampleKindNamesItsLineAndSkippingCountsThem) {
  TempDir d;
  fs::copy_file(kImage, d / "a.png");
  fs::create_directories(d / "sub");
  write(d / "bad.png", "not a png");
  const std::string ok = R"({"images": ["a.png"], "conversations": [{"from": "human", "value": "<image> hi"}, {"from": "gpt", "value": "yo"}]})";
  struct Case {
    std::string line, why;
  };
  const std::vector<Case> cases = {
      {"{not json", "not valid JSON"},
      {"[1, 2]", "expected a JSON object"},
      {R"({"id": 1})", "no \"conversations\" or \"messages\" list"},
      {R"({"images": ["a.png"], "conversations": [{"from": "human", "value": "hi"}, {"from": "gpt", "value": "yo"}]})",
       "0 <image> marker(s) but 1 image(s)"},
      {R"({"conversations": [{"from": "human", "value": "<image>"}, {"from": "gpt", "value": "yo"}]})",
       "1 <image> marker(s) but 0 image(s)"},
      {R"({"images": ["nope.png"], "conversations": [{"from": "human", "value": "<image>"}, {"from": "gpt", "value": "yo"}]})",
       "image 'nope.png': no such file"},
      {R"({"images": ["/etc/passwd"], "conversations": [{"from": "human", "value": "<image>"}, {"from": "gpt", "value": "yo"}]})",
       "absolute paths are refused"},
      {R"({"images": ["sub/../a.png"], "conversations": [{"from": "human", "value": "<image>"}, {"from": "gpt", "value": "yo"}]})",
       "'..' is refused"},
      {R"({"conversations": [{"from": "robot", "value": "x"}]})", "turn 1: unknown role 'robot'"},
      {R"({"conversations": [{"from": "human"}]})", "turn 1: expected"},
  };
  for (size_t i = 0; i < cases.size(); ++i) {
    const std::string file = d / ("bad" + std::to_string(i) + ".jsonl");
    write(file, ok + "\n\n" + cases[i].line + "\n");  // the bad sample is on line 3
    train::DataConfig dc;
    dc.train_path = {file};
    train::DataReport rep;
    const auto err = error_of([&] { train::read_jsonl(dc, rep); });
    EXPECT_NE(err.find(file + ":3: "), std::string::npos) << err;
    EXPECT_NE(err.find(cases[i].why), std::string::npos) << err;
    dc.skip_bad_samples = true;
    train::DataReport skipped;
    const auto good = train::read_jsonl(dc, skipped);
    EXPECT_EQ(good.size(), 1u);
    EXPECT_EQ(skipped.skipped, 1);
    EXPECT_EQ(skipped.lines, 2);
  }
  // ".." and absolute paths pass when allowed; markers take images in order across turns.
  const auto s = train::parse_sample(
      R"({"images": ["sub/../a.png", "a.png"], "conversations": [{"from": "system", "value": "be brief"}, {"from": "human", "value": "<image> edit"}, {"from": "gpt", "value": "<image>"}]})",
      "x:1", d.path.string(), true);
  ASSERT_EQ(s.turns.size(), 2u);
  EXPECT_EQ(s.system_prompt.value_or("?"), "be brief");
  EXPECT_EQ(s.turns[0].role, "user");
  EXPECT_EQ(s.turns[1].role, "assistant");
  ASSERT_EQ(s.turns[1].images.size(), 1u);
  EXPECT_EQ(s.turns[1].images[0], d / "a.png");
  // An undecodable image fails when the sample is read, naming its line.
  const auto bad = train::parse_sample(
      R"({"image": "bad.png", "messages": [{"role": "user", "content": "<image>"}, {"role": "assistant", "content": "x"}]})",
      "f.jsonl:9", d.path.string(), false);
  const auto err = error_of([&] { train::to_example(bad, [](const std::string& p) { return io::read_image(p); }); });
  EXPECT_EQ(err.rfind("f.jsonl:9: ", 0), 0u) << err;
}

// ---- batching and schedules --------------------------------------------------------------------
TEST(TrainBatching, EpochOrderIsASeededPermutationAndBatchesCoverEachEpochOnce) {
  const auto a = train::epoch_order(10, 42, 0), b = train::epoch_order(10, 42, 0), c = train::epoch_order(10, 42, 1);
  EXPECT_EQ(a, b);
  EXPECT_NE(a, c);
  auto sorted = a;
  std::sort(sorted.begin(), sorted.end());
  for (int64_t i = 0; i < 10; ++i) EXPECT_EQ(sorted[static_cast<size_t>(i)], i);

  train::Config cfg;
  cfg.train.micro_batch_size = 2;
  cfg.train.global_batch_size = 4;
  train::BatchPlanner p(cfg, std::vector<int64_t>(10, 5));
  EXPECT_EQ(p.steps_per_epoch(), 3);  // 4 + 4 + 2
  std::vector<int64_t> seen;
  for (int s = 0; s < 3; ++s)
    for (const auto& mb : p.next_step())
      for (auto i : mb) seen.push_back(i);
  EXPECT_EQ(seen, a);
  EXPECT_EQ(p.position().epoch, 1);
  EXPECT_EQ(p.position().cursor, 0);

  // dyn_bsz: micro-batches filled up to max_seq_len x micro_batch_size tokens.
  cfg.train.dyn_bsz = true;
  cfg.train.micro_batch_size = 1;
  cfg.train.global_batch_size = 2;
  cfg.data.max_seq_len = 10;
  train::BatchPlanner q(cfg, {4, 4, 4, 9, 1, 6});
  const auto step = q.next_step();
  ASSERT_EQ(step.size(), 2u);
  for (const auto& mb : step) {
    int64_t tokens = 0;
    for (auto i : mb) tokens += std::vector<int64_t>{4, 4, 4, 9, 1, 6}[static_cast<size_t>(i)];
    EXPECT_TRUE(tokens <= 10 || mb.size() == 1);
  }
}

TEST(TrainSchedule, WarmupThenConstantCosineOrLinearToTheFloor) {
  train::TrainConfig t;
  t.lr = 1.0;
  t.lr_min = 0.1;
  t.warmup_steps = 4;
  EXPECT_DOUBLE_EQ(train::lr_at(t, 0, 14), 0.0);
  EXPECT_DOUBLE_EQ(train::lr_at(t, 2, 14), 0.5);
  EXPECT_DOUBLE_EQ(train::lr_at(t, 9, 14), 1.0);
  t.lr_scheduler = "cosine";
  EXPECT_DOUBLE_EQ(train::lr_at(t, 4, 14), 1.0);
  EXPECT_NEAR(train::lr_at(t, 9, 14), 0.55, 1e-12);
  EXPECT_NEAR(train::lr_at(t, 14, 14), 0.1, 1e-12);
  t.lr_scheduler = "linear";
  EXPECT_NEAR(train::lr_at(t, 9, 14), 0.55, 1e-12);
  EXPECT_NEAR(train::lr_at(t, 13, 14), 0.19, 1e-12);
}

TEST(TrainMetrics, Crc32cMatchesTheKnownValue) {
  EXPECT_EQ(train::crc32c("123456789", 9), 0xE3069283u);  // the CRC-32C check value
}

// ---- training the tiny Janus -------------------------------------------------------------------
TEST(TrainJanus, OverfitsAFewSamplesLeavesFrozenGroupsBitIdenticalAndExports) {
  QuietLogs q;
  TempDir d;
  write_data(d);
  const std::string out = d / "run";
  auto cfg = janus_config(d, out, {{"train.max_steps", "40"}, {"train.freeze_vit", "true"}, {"train.save_hf_weights", "true"}});
  const auto r = train::run_training(cfg);
  EXPECT_EQ(r.steps, 40);
  const auto m = metrics_of(out);
  ASSERT_EQ(m.size(), 40u);
  const double first = m.front()["loss"], last = m.back()["loss"];
  EXPECT_LT(last, 0.1 * first) << first << " -> " << last;
  EXPECT_GT(m.front()["ce_loss"].get<double>(), 0);
  EXPECT_GT(m.front()["gen_loss"].get<double>(), 0);
  for (const char* k : {"step", "loss", "ce_loss", "gen_loss", "lr", "grad_norm", "tokens", "tokens_per_s", "step_time_s",
                        "peak_rss_mib", "setup_rss_mib"})
    EXPECT_TRUE(m.back().contains(k)) << k;
  EXPECT_GT(m.back()["setup_rss_mib"].get<double>(), 0);
  EXPECT_LE(m.back()["setup_rss_mib"].get<double>(), m.back()["peak_rss_mib"].get<double>());
  EXPECT_TRUE(fs::is_regular_file(out + "/loss.png"));
  EXPECT_TRUE(fs::is_regular_file(out + "/config.yaml"));
  bool tb = false;
  for (const auto& e : fs::directory_iterator(out)) tb = tb || e.path().filename().string().find("tfevents") != std::string::npos;
  EXPECT_TRUE(tb);

  // The export is the shipped layout; frozen groups (SigLIP, the VQ tokenizer) are bit-identical,
  // trained ones moved.
  const std::string hf = out + "/checkpoints/global_step_40/hf_ckpt";
  ASSERT_TRUE(fs::is_regular_file(hf + "/config.json"));
  ASSERT_TRUE(fs::is_regular_file(hf + "/tokenizer.json"));
  auto before = io::Checkpoint::open(kJanus + "/model.safetensors");
  auto after = io::Checkpoint::open(hf + "/model.safetensors");
  EXPECT_EQ(after.tensors().size(), before.tensors().size());
  int frozen_same = 0, trained_moved = 0;
  for (const auto& info : before.tensors()) {
    ASSERT_TRUE(after.contains(info.name)) << info.name;
    const bool same = torch::equal(before.get(info.name, torch::kFloat32), after.get(info.name, torch::kFloat32));
    if (info.name.rfind("vision_model.", 0) == 0 || info.name.rfind("gen_vision_model.", 0) == 0) {
      EXPECT_TRUE(same) << info.name;
      frozen_same += same;
    } else if (info.name == "language_model.model.embed_tokens.weight" || info.name == "gen_head.vision_head.weight") {
      EXPECT_FALSE(same) << info.name;
      trained_moved += !same;
    }
  }
  EXPECT_GT(frozen_same, 10);
  EXPECT_EQ(trained_moved, 2);

  // A key Janus does not declare is refused, naming Janus' keys.
  auto bad = janus_config(d, d / "run2", {{"train.unfreeze_mot_gen", "true"}, {"train.max_steps", "1"}});
  const auto err = error_of([&] { train::run_training(bad); });
  EXPECT_NE(err.find("train.unfreeze_mot_gen: does not apply to janus (its freezing keys: freeze_vit"), std::string::npos) << err;
}

TEST(TrainJanus, ResumingFromACheckpointRepeatsTheSameStepsExactly) {
  QuietLogs q;
  TempDir d;
  write_data(d);
  const std::vector<std::pair<std::string, std::string>> sched = {
      {"train.max_steps", "6"}, {"train.lr_scheduler", "cosine"}, {"train.warmup_steps", "2"},
      {"train.global_batch_size", "2"}, {"train.save_steps", "3"}, {"train.lr", "3e-3"}};
  const std::string a = d / "straight";
  train::run_training(janus_config(d, a, sched));
  // A second run that resumes from the first one's step-3 checkpoint.
  const std::string b = d / "resumed";
  fs::create_directories(b + "/checkpoints");
  fs::copy(a + "/checkpoints/global_step_3", b + "/checkpoints/global_step_3", fs::copy_options::recursive);
  fs::create_directories(b + "/checkpoints/global_step_6.tmp");  // a torn save is ignored
  auto rc = sched;
  rc.push_back({"train.load_path", "auto"});
  const auto r = train::run_training(janus_config(d, b, rc));
  EXPECT_EQ(r.steps, 6);
  EXPECT_FALSE(fs::exists(b + "/checkpoints/global_step_6.tmp"));
  const auto ma = metrics_of(a), mb = metrics_of(b);
  ASSERT_EQ(ma.size(), 6u);
  ASSERT_EQ(mb.size(), 3u);  // steps 4..6: the resumed run wrote only what it trained
  for (size_t i = 0; i < 3; ++i) {
    EXPECT_EQ(mb[i]["step"], ma[i + 3]["step"]);
    for (const char* k : {"loss", "ce_loss", "gen_loss", "lr", "grad_norm"}) EXPECT_EQ(mb[i][k], ma[i + 3][k]) << k << " step " << i + 4;
  }
  auto wa = io::Checkpoint::open(a + "/checkpoints/global_step_6/model.safetensors");
  auto wb = io::Checkpoint::open(b + "/checkpoints/global_step_6/model.safetensors");
  ASSERT_EQ(wa.tensors().size(), wb.tensors().size());
  for (const auto& info : wa.tensors()) EXPECT_TRUE(torch::equal(wa.get(info.name), wb.get(info.name))) << info.name;

  // A folder without the completion marker is refused when named explicitly.
  rc.back().second = b + "/checkpoints/global_step_6.tmp";
  fs::create_directories(rc.back().second);
  const auto err = error_of([&] { train::run_training(janus_config(d, d / "x", rc)); });
  EXPECT_NE(err.find("not a complete checkpoint"), std::string::npos) << err;
}

// bf16 compute with fp32 master weights (train.master_dtype fp32, the default): at lr 1e-6 the
// updates are far below bf16's resolution, so the bf16 parameters stepped in place barely move,
// while the fp32 masters (what the checkpoint holds) carry every update; a resumed run continues
// from the masters exactly.
TEST(TrainJanus, Bf16ComputeStepsFp32MasterWeights) {
  QuietLogs q;
  TempDir d;
  write_data(d);
  const std::vector<std::pair<std::string, std::string>> base = {
      {"train.dtype", "bf16"}, {"train.lr", "1e-6"}, {"train.max_steps", "3"}, {"train.save_steps", "2"},
      {"train.lr_scheduler", "constant"}, {"train.warmup_steps", "0"}, {"train.weight_decay", "0"}};
  const std::string masters = d / "masters", plain = d / "plain";
  train::run_training(janus_config(d, masters, base));
  auto same = base;
  same.push_back({"train.master_dtype", "same"});
  train::run_training(janus_config(d, plain, same));

  auto orig = io::Checkpoint::open(kJanus + "/model.safetensors");
  auto wm = io::Checkpoint::open(masters + "/checkpoints/global_step_3/model.safetensors");
  auto wp = io::Checkpoint::open(plain + "/checkpoints/global_step_3/model.safetensors");
  const std::string name = "language_model.model.layers.0.mlp.up_proj.weight";
  ASSERT_TRUE(wm.contains(name));
  EXPECT_EQ(wm.get(name).scalar_type(), torch::kFloat32);
  EXPECT_EQ(wp.get(name).scalar_type(), torch::kBFloat16);
  const auto start = orig.get(name).to(torch::kBFloat16).to(torch::kFloat32);  // what the bf16 model loaded
  const auto dm = (wm.get(name) - start).abs(), dp = (wp.get(name).to(torch::kFloat32) - start).abs();
  const double moved_masters = (dm > 0).to(torch::kFloat64).mean().item<double>();
  const double moved_plain = (dp > 0).to(torch::kFloat64).mean().item<double>();
  EXPECT_GT(moved_masters, 0.99) << "the masters hold the updates";
  EXPECT_LT(dm.max().item<double>(), 1e-5) << "3 steps of at most ~lr each";
  EXPECT_LT(moved_plain, 0.05) << "bf16 parameters stepped in place lose updates this small";

  // 2 steps, then 1 resumed from the step-2 masters: the same losses and masters as 3 straight.
  const std::string resumed = d / "resumed";
  fs::create_directories(resumed + "/checkpoints");
  fs::copy(masters + "/checkpoints/global_step_2", resumed + "/checkpoints/global_step_2", fs::copy_options::recursive);
  auto rc = base;
  rc.push_back({"train.load_path", "auto"});
  train::run_training(janus_config(d, resumed, rc));
  const auto ma = metrics_of(masters), mr = metrics_of(resumed);
  ASSERT_EQ(ma.size(), 3u);
  ASSERT_EQ(mr.size(), 1u);
  EXPECT_EQ(mr[0]["loss"], ma[2]["loss"]);
  auto wr = io::Checkpoint::open(resumed + "/checkpoints/global_step_3/model.safetensors");
  EXPECT_TRUE(torch::equal(wr.get(name), wm.get(name)));
}

// ---- training the tiny BAGEL -------------------------------------------------------------------
TEST(TrainBagel, LearnsUnderstandingAndGenerationLeavesTheFrozenViTAndExports) {
  QuietLogs q;
  TempDir d;
  const std::string bagel = std::string(OMNI_FIXTURES) + "/bagel_tiny";
  write(d / "data.jsonl",
        R"({"images": ["und_image.png"], "conversations": [{"from": "human", "value": "<image>Is there a circle?"}, {"from": "gpt", "value": "Yes, a red one."}]}
{"images": ["edit_image.png", "und_image.png"], "conversations": [{"from": "human", "value": "<image>turn it around"}, {"from": "gpt", "value": "<image>"}]}
)");
  write(d / "cfg.yaml", "model: {model_path: " + bagel + "}\ndata: {train_path: " + (d / "data.jsonl") + ", image_root: " +
                            bagel + ", text_cond_dropout_prob: 0, vit_cond_dropout_prob: 0, vae_cond_dropout_prob: 0}\n" +
                            "train: {output_dir: " + (d / "run") + ", micro_batch_size: 2, global_batch_size: 2, max_steps: 60, lr: 1.0e-2, " +
                            "lr_scheduler: cosine, freeze_vit: true, save_hf_weights: true}\n");
  const auto r = train::run_training(train::load_config(d / "cfg.yaml"));
  EXPECT_EQ(r.steps, 60);
  const auto m = metrics_of(d / "run");
  ASSERT_EQ(m.size(), 60u);
  EXPECT_EQ(m.front()["ce_tokens"], 16);   // "Yes, a red one." (15 bytes) + <|im_end|>
  EXPECT_EQ(m.front()["gen_tokens"], 20);  // the 80x64 target: 4 x 5 latent tokens
  const double ce0 = m.front()["ce_loss"], gen0 = m.front()["gen_loss"];
  double ce_end = 0, gen_end = 0;
  for (size_t i = m.size() - 10; i < m.size(); ++i) {
    ce_end += m[i]["ce_loss"].get<double>() / 10;
    gen_end += m[i]["gen_loss"].get<double>() / 10;
  }
  EXPECT_LT(ce_end, 0.05 * ce0) << ce0 << " -> " << ce_end;
  EXPECT_LT(gen_end, 0.9 * gen0) << gen0 << " -> " << gen_end;  // flow MSE: random t and noise each step

  const std::string hf = d / "run/checkpoints/global_step_60/hf_ckpt";
  auto before = io::Checkpoint::open(bagel + "/ema.safetensors");
  auto after = io::Checkpoint::open(hf + "/ema.safetensors");
  ASSERT_EQ(after.tensors().size(), before.tensors().size());
  for (const auto& info : before.tensors()) {
    const bool same = torch::equal(before.get(info.name), after.get(info.name, before.info(info.name).dtype == DType::BF16
                                                                                      ? torch::kBFloat16
                                                                                      : torch::kFloat32));
    if (info.name.rfind("vit_model.", 0) == 0 || info.name.find("pos_embed") != std::string::npos)
      EXPECT_TRUE(same) << info.name << " is frozen";
    if (info.name == "connector.fc1.weight" || info.name == "llm2vae.weight") EXPECT_FALSE(same) << info.name << " trains";
  }
  EXPECT_TRUE(fs::is_regular_file(hf + "/ae.safetensors"));
  EXPECT_TRUE(fs::is_regular_file(hf + "/bagel_config.json"));
}
