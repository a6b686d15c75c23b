// omni train speed: step time, tokens/s and the achieved FLOP rate of a mid-size config of each
// family (random weights written to a temporary model folder, the tiny fixtures' tokenizers and
// image towers), against this machine's measured fp32 GEMM rate. Not run by ctest.
//
//   build/bench/bench_train [--steps N] [--family janus|bagel|all] [--threads N (2)] [--fixtures DIR]
//   build/bench/bench_train --nproc 1,2,4 [--mode fsdp|ddp] [--ulysses K] [--omni build/omni] ...
//
// --nproc: the same steps through `omni launch` at each process count (the threads split between
// the processes, the global batch fixed): tokens/s and its scaling, seconds per step in collectives,
// and memory per process (the largest process's peak RSS, before step 1 and over the run, and its
// trainable state: parameters or shards + gradients + AdamW moments). --ulysses K: groups of K processes share each sequence
// (train.ulysses_size; process counts K does not divide are left out).
//
// FLOPs per step are counted as 6 x (the decoder's non-embedding parameters one token passes
// through: for BAGEL's MoT one expert's) x (tokens in the step) + 6 x (head parameters) x (rows
// it is applied to). Attention's T^2 term, the image towers and the frozen VAE / VQ encoders are
// left out, so the rate is a lower bound of the work done.
#include <torch/torch.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

#include "bench_util.h"
#include "omni/core/log.h"
#include "omni/core/memory.h"
#include "omni/io/image.h"
#include "omni/io/trace_torch.h"
#include "omni/models/bagel/config.h"
#include "omni/models/bagel/model.h"
#include "omni/models/janus/config.h"
#include "omni/models/janus/model.h"
#include "omni/train/config.h"
#include "omni/train/trainer.h"

namespace fs = std::filesystem;
using json = nlohmann::json;
using namespace omni;

namespace {

std::string kFixtures = "tests/fixtures";  // --fixtures DIR (run from the repository root by default)

json read_json(const fs::path& p) {
  std::ifstream f(p);
  return json::parse(f);
}
void write_json(const fs::path& p, const json& j) { std::ofstream(p) << j.dump(2); }

// Random N(0, 0.02) weights for every parameter and buffer of a module tree, saved as safetensors.
void save_random(torch::nn::Module& m, const std::string& path) {
  torch::NoGradGuard ng;
  std::vector<std::pair<std::string, torch::Tensor>> t;
  for (auto& p : m.named_parameters()) {
    p.value().normal_(0, 0.02);
    t.emplace_back(p.key(), p.value());
  }
  for (auto& b : m.named_buffers()) t.emplace_back(b.key(), b.value());
  io::save_safetensors(path, t);
}

io::Image gradient_image(int w, int h) {
  io::Image img(w, h);
  for (int y = 0; y < h; ++y)
    for (int x = 0; x < w; ++x) {
      auto* p = &img.rgb[(static_cast<size_t>(y) * w + x) * 3];
      p[0] = static_cast<uint8_t>(255 * x / w);
      p[1] = static_cast<uint8_t>(255 * y / h);
      p[2] = static_cast<uint8_t>((x * y) % 256);
    }
  return img;
}

double gemm_gflops() {
  auto a = torch::randn({2048, 2048}), b = torch::randn({2048, 2048});
  torch::mm(a, b);
  const auto t = bench::clk::now();
  const int reps = 5;
  for (int i = 0; i < reps; ++i) torch::mm(a, b);
  return reps * 2.0 * 2048.0 * 2048 * 2048 / bench::secs(t) / 1e9;
}

struct Setup {
  std::string name, dims;
  fs::path model_dir, data;
  double flops_per_token = 0;  // 6 x token-path parameters
  double head_flops_per_row = 0;
};

// Janus: a 12-layer 1024-wide Llama (the 1B's is 24 x 2048) on the tiny SigLIP / VQ towers.
Setup janus_setup(const fs::path& root) {
  Setup s;
  s.name = "janus";
  s.model_dir = root / "janus";
  fs::create_directories(s.model_dir);
  const fs::path src = kFixtures + "/janus_tiny";
  for (const char* f : {"tokenizer.json", "preprocessor_config.json", "processor_config.json"})
    fs::copy_file(src / f, s.model_dir / f, fs::copy_options::overwrite_existing);
  json cfg = read_json(src / "config.json");
  const int64_t H = 1024, I = 2816, L = 12;
  cfg["language_config"]["hidden_size"] = H;
  cfg["language_config"]["intermediate_size"] = I;
  cfg["language_config"]["num_hidden_layers"] = L;
  cfg["language_config"]["num_attention_heads"] = 16;
  cfg["language_config"]["num_key_value_heads"] = 16;
  cfg["aligner_config"]["params"]["n_embed"] = H;
  cfg["gen_aligner_config"]["params"]["n_embed"] = H;
  cfg["gen_head_config"]["params"]["n_embed"] = H;
  cfg["gen_head_config"]["params"]["image_token_embed"] = H;
  write_json(s.model_dir / "config.json", cfg);
  const auto jc = models::janus::JanusConfig::from_file((s.model_dir / "config.json").string());
  models::janus::JanusModel m(jc);
  save_random(*m.net(), (s.model_dir / "model.safetensors").string());
  s.dims = "Llama 12 x 1024 (I 2816), " + std::to_string(bench::numel_of(*m.net()) / 1000000) + "M params";
  s.flops_per_token = 6.0 * L * (4.0 * H * H + 3.0 * H * I);
  s.head_flops_per_row = 6.0 * (H * 2048 + H * 16384.0);  // lm_head (vocab 2048) or gen_head per row
  io::write_png((root / "img.png").string(), gradient_image(384, 384));
  s.data = root / "janus.jsonl";
  std::ofstream(s.data) << R"({"images": ["img.png"], "conversations": [{"from": "human", "value": "<image>\nDescribe this picture in detail, please."}, {"from": "gpt", "value": "A smooth gradient from dark to light with a pattern of fine lines across it."}]})"
                        << "\n"
                        << R"({"images": ["img.png"], "conversations": [{"from": "human", "value": "A smooth colour gradient with fine lines."}, {"from": "gpt", "value": "<image>"}]})"
                        << "\n";
  return s;
}

// BAGEL: an 8-layer 512-wide Qwen2 MoT (two experts) on the tiny SigLIP and FLUX VAE, with
// transforms for 384 px images: an edit sample packs ~1900 tokens (the long-sequence case).
Setup bagel_setup(const fs::path& root) {
  Setup s;
  s.name = "bagel";
  s.model_dir = root / "bagel";
  fs::create_directories(s.model_dir);
  const fs::path src = kFixtures + "/bagel_tiny";
  for (const char* f : {"tokenizer.json", "ae.safetensors"})
    fs::copy_file(src / f, s.model_dir / f, fs::copy_options::overwrite_existing);
  const int64_t H = 512, I = 1408, L = 8;
  json llm = read_json(src / "llm_config.json");
  llm["hidden_size"] = H;
  llm["intermediate_size"] = I;
  llm["num_hidden_layers"] = L;
  llm["num_attention_heads"] = 8;
  llm["num_key_value_heads"] = 4;
  write_json(s.model_dir / "llm_config.json", llm);
  json vit = read_json(src / "vit_config.json");
  vit["image_size"] = 14 * 32;
  write_json(s.model_dir / "vit_config.json", vit);
  json bc = read_json(src / "bagel_config.json");
  bc["bagel_config"]["max_latent_size"] = 32;
  bc["bagel_config"]["vit_max_num_patch_per_side"] = 32;
  bc["vae_transform"] = {{"max_image_size", 512}, {"min_image_size", 256}, {"image_stride", 16}, {"max_pixels", 1806336}};
  bc["vit_transform"] = {{"max_image_size", 448}, {"min_image_size", 224}, {"image_stride", 14}, {"max_pixels", 1806336}};
  write_json(s.model_dir / "bagel_config.json", bc);
  // A placeholder so BagelConfig::load finds a weights file; replaced by the random weights below.
  io::save_safetensors((s.model_dir / "ema.safetensors").string(), {{"placeholder", torch::zeros({1})}});
  const auto cfg = bagel::BagelConfig::load(s.model_dir.string());
  bagel::BagelImpl m(cfg);
  save_random(m, (s.model_dir / "ema.safetensors").string());
  const int64_t kv = H / 8 * 4;
  s.dims = "Qwen2 MoT 8 x 512 (I 1408, 2 experts), " + std::to_string(bench::numel_of(m) / 1000000) + "M params";
  s.flops_per_token = 6.0 * L * (2.0 * H * H + 2.0 * H * kv + 3.0 * H * I);
  s.head_flops_per_row = 6.0 * H * 512;  // lm_head (vocab 512) per CE row
  io::write_png((root / "img.png").string(), gradient_image(384, 384));
  s.data = root / "bagel.jsonl";
  std::ofstream(s.data) << R"({"images": ["img.png", "img.png"], "conversations": [{"from": "human", "value": "<image>Make the lines thicker and the gradient warmer."}, {"from": "gpt", "value": "<image>"}]})"
                        << "\n"
                        << R"({"images": ["img.png"], "conversations": [{"from": "human", "value": "<image>What is in this picture?"}, {"from": "gpt", "value": "A smooth gradient with a pattern of fine lines."}]})"
                        << "\n";
  return s;
}

// The model and data of `s` trained through `omni launch` at each process count.
void scaling_table(const Setup& s, const fs::path& root, const std::vector<int>& nprocs, const std::string& mode,
                   int ulysses, const std::string& omni_bin, int steps, int threads) {
  std::printf("\n%s, %s%s: %s, %d steps after a warm-up, %d threads in all\n\n", s.name.c_str(), mode.c_str(),
              ulysses > 1 ? (", ulysses_size " + std::to_string(ulysses)).c_str() : "", s.dims.c_str(), steps, threads);
  std::printf("| processes | step time | tokens/s | × 1 process | in collectives | state / process | peak RSS / process, loaded | peak RSS / process |\n");
  std::printf("|---:|---:|---:|---:|---:|---:|---:|---:|\n");
  double base = 0;
  for (int n : nprocs) {
    if (n % ulysses != 0) continue;
    train::Config cfg;
    cfg.model.model_path = s.model_dir.string();
    cfg.data.train_path = {s.data.string()};
    cfg.data.text_cond_dropout_prob = cfg.data.vit_cond_dropout_prob = cfg.data.vae_cond_dropout_prob = 0;
    cfg.train.output_dir = (root / ("scale_" + s.name + "_" + std::to_string(n))).string();
    cfg.train.global_batch_size = 2;
    cfg.train.max_steps = steps + 1;
    cfg.train.lr = 1e-5;
    cfg.train.save_steps = 1000000;
    cfg.train.data_parallel_mode = mode;
    cfg.train.ulysses_size = ulysses;
    cfg.train.threads = std::max(1, threads / n);
    const fs::path yaml = root / ("scale_" + s.name + "_" + std::to_string(n) + ".yaml");
    std::ofstream(yaml) << cfg.to_yaml();
    const std::string cmd = omni_bin + " --log warn launch --nproc_per_node " + std::to_string(n) + " --master_port " +
                            std::to_string(29000 + (::getpid() % 1000) * 4 + n) + " -- " + omni_bin + " train " +
                            yaml.string() + " > /dev/null";
    if (std::system(cmd.c_str()) != 0) {
      std::printf("| %d | failed: %s |\n", n, cmd.c_str());
      continue;
    }
    std::ifstream in(cfg.train.output_dir + "/metrics.jsonl");
    std::string line;
    double time = 0, tokens = 0, comm = 0, rss = 0, state = 0, setup_rss = 0;
    int k = 0;
    while (std::getline(in, line)) {
      const json m = json::parse(line);
      rss = std::max(rss, m["peak_rss_mib"].get<double>());
      state = m["state_mib"].get<double>();
      setup_rss = m["setup_rss_mib"].get<double>();
      if (m["step"].get<int>() == 1) continue;
      time += m["step_time_s"].get<double>();
      tokens += m["tokens"].get<double>();
      comm += m["comm_s"].get<double>();
      ++k;
    }
    const double per_step = time / k, tps = tokens / time;
    if (base == 0) base = tps;
    std::printf("| %d | %.2f s | %.0f | %.2f | %.2f s | %.0f MiB | %.0f MiB | %.0f MiB |\n", n, per_step, tps, tps / base,
                comm / k, state, setup_rss, rss);
    std::fflush(stdout);
  }
}

}  // namespace

int main(int argc, char** argv) {
  int steps = 4, threads = 2;  // as the other benches
  std::string family = "all", mode = "fsdp", omni_bin = "build/omni";
  int ulysses = 1;
  std::vector<int> nprocs;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string a = argv[i];
    if (a == "--steps") steps = std::stoi(argv[i + 1]);
    else if (a == "--family") family = argv[i + 1];
    else if (a == "--threads") threads = std::stoi(argv[i + 1]);
    else if (a == "--fixtures") kFixtures = argv[i + 1];
    else if (a == "--mode") mode = argv[i + 1];
    else if (a == "--ulysses") ulysses = std::max(1, std::stoi(argv[i + 1]));
    else if (a == "--omni") omni_bin = argv[i + 1];
    else if (a == "--nproc") {
      std::stringstream ss(argv[i + 1]);
      for (std::string x; std::getline(ss, x, ',');) nprocs.push_back(std::stoi(x));
    }
  }
  keep_freed_memory_for_reuse();
  set_log_level(LogLevel::Warn);
  if (threads > 0) torch::set_num_threads(threads);
  const fs::path root = fs::temp_directory_path() / ("omni_bench_train_" + std::to_string(::getpid()));
  fs::create_directories(root);
  if (!nprocs.empty()) {
    for (const std::string f : {"janus", "bagel"})
      if (family == "all" || family == f)
        scaling_table(f == "janus" ? janus_setup(root) : bagel_setup(root), root, nprocs, mode, ulysses, omni_bin, steps, threads);
    fs::remove_all(root);
    return 0;
  }
  const double bound = gemm_gflops();
  std::printf("omni train, %d threads, fp32 GEMM bound %.1f GFLOP/s (2048^3 torch::mm)\n\n", torch::get_num_threads(), bound);
  std::printf("| family | dims | tokens/step | step time | tokens/s | GFLOP/s | of bound | peak RSS |\n");
  std::printf("|---|---|---:|---:|---:|---:|---:|---:|\n");
  for (const std::string f : {"janus", "bagel"}) {
    if (family != "all" && family != f) continue;
    Setup s = f == "janus" ? janus_setup(root) : bagel_setup(root);
    train::Config cfg;
    cfg.model.model_path = s.model_dir.string();
    cfg.data.train_path = {s.data.string()};
    cfg.data.text_cond_dropout_prob = cfg.data.vit_cond_dropout_prob = cfg.data.vae_cond_dropout_prob = 0;
    cfg.train.output_dir = (root / ("out_" + f)).string();
    cfg.train.global_batch_size = 2;
    cfg.train.max_steps = steps + 1;  // the first step warms up
    cfg.train.lr = 1e-5;
    cfg.train.save_steps = 1000000;
    train::run_training(cfg);
    std::ifstream in(cfg.train.output_dir + "/metrics.jsonl");
    std::string line;
    double time = 0, tokens = 0, rows = 0, rss = 0;
    int n = 0;
    while (std::getline(in, line)) {
      const json m = json::parse(line);
      rss = std::max(rss, m["peak_rss_mib"].get<double>());
      if (m["step"].get<int>() == 1) continue;
      time += m["step_time_s"].get<double>();
      tokens += m["tokens"].get<double>();
      rows += m["ce_tokens"].get<double>() + m["gen_tokens"].get<double>();
      ++n;
    }
    const double per_step = time / n, toks = tokens / n;
    const double gflops = (s.flops_per_token * toks + s.head_flops_per_row * rows / n) / per_step / 1e9;
    std::printf("| %s | %s | %.0f | %.2f s | %.0f | %.1f | %.0f%% | %.0f MiB |\n", s.name.c_str(), s.dims.c_str(), toks,
                per_step, toks / per_step, gflops, 100 * gflops / bound, rss);
    std::fflush(stdout);
  }
  fs::remove_all(root);
  return 0;
}
