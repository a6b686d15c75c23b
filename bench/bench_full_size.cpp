// Real-size checkpoints on this machine: writes a full-depth checkpoint folder at the real
// dimensions (random weights, stored bf16 as the official repos ship them; BAGEL's ae.safetensors
// fp32) to --dir, then runs the `omni` CLI on it as a child process, understand then generate, and
// reports each run's load time, wall time and peak RSS (wait4's ru_maxrss of the child). The
// folder is deleted afterwards unless --keep.
//   bench_full_size --model janus-pro-7b|bagel-7b-mot [--dtype bf16|int8|fp32] [--omni build/omni]
//                   [--fixtures tests/fixtures] [--dir /tmp] [--keep] [--rss_limit_gib 21]
//                   [--steps 3] [--size 256] [--tokens 16] [--skip_generate]
// Nothing at full size is ever materialised here: the module tree is built with its decoder linears
// as untouched int8 placeholders (nn::NarrowLinearBuild(Char)) only to list names and shapes, then freed;
// each tensor is filled (HF-style: matrices N(0, 0.02^2), as chunks of one pool of draws at seeded
// random offsets; norm weights 1, biases 0) and written one at a time
// (io::write_safetensors_streamed). The tokenizer and processor files come from the tiny fixtures
// (their ids are all below the real vocab sizes).
// A watchdog kills a child whose RSS passes --rss_limit_gib, so a regression cannot take the
// machine down (the row then says "killed").
// Janus generate draws the 576 tokens of a 384^2 image (CFG pair, one image); BAGEL generate draws
// a --size^2 image in --steps flow steps with the default CFG (3 branches inside the interval).
#include <torch/torch.h>

#include <fcntl.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "omni/core/error.h"
#include "omni/core/strings.h"
#include "omni/generate/random.h"
#include "omni/io/dtype_torch.h"
#include "omni/io/hf_config.h"
#include "omni/io/module_loader_torch.h"
#include "omni/io/safetensors.h"
#include "omni/models/bagel/config.h"
#include "omni/models/bagel/model.h"
#include "omni/models/janus/config.h"
#include "omni/models/janus/model.h"
#include "omni/nn/flux_vae.h"
#include "omni/nn/linear.h"

using namespace omni;
namespace fs = std::filesystem;
using clk = std::chrono::steady_clock;

namespace {

double secs(clk::time_point t) { return std::chrono::duration<double>(clk::now() - t).count(); }
constexpr double kGiB = 1024.0 * 1024.0 * 1024.0;

// deepseek-ai/Janus-Pro-7B config.json (the keys the official code reads).
const char* kJanusPro7B = R"({
  "architectures": ["MultiModalityCausalLM"],
  "model_type": "multi_modality",
  "torch_dtype": "bfloat16",
  "aligner_config": {"cls": "MlpProjector", "model_type": "aligner",
    "params": {"depth": 2, "input_dim": 1024, "n_embed": 4096, "projector_type": "mlp_gelu"}},
  "gen_aligner_config": {"cls": "MlpProjector", "model_type": "gen_aligner",
    "params": {"depth": 2, "input_dim": 8, "n_embed": 4096, "projector_type": "mlp_gelu"}},
  "gen_head_config": {"cls": "vision_head", "model_type": "gen_head",
    "params": {"image_token_embed": 4096, "image_token_size": 16384, "n_embed": 4096}},
  "gen_vision_config": {"cls": "VQ-16", "model_type": "gen_vision",
    "params": {"image_token_size": 16384, "n_embed": 8}},
  "language_config": {"hidden_size": 4096, "intermediate_size": 11008, "max_position_embeddings": 16384,
    "model_type": "llama", "num_attention_heads": 32, "num_hidden_layers": 30, "num_key_value_heads": 32,
    "rms_norm_eps": 1e-06, "rope_theta": 10000.0, "torch_dtype": "bfloat16", "vocab_size": 102400},
  "vision_config": {"cls": "CLIPVisionTower", "model_type": "vision",
    "params": {"image_size": 384, "model_name": "siglip_large_patch16_384", "select_feature": "same",
               "select_layer": -1}}
})";

// ByteDance-Seed/BAGEL-7B-MoT llm_config.json and vit_config.json. No bagel_config.json: the
// defaults are app.py's hard-coded values (as for the shipped folder).
const char* kBagelLlm = R"({
  "architectures": ["Qwen2ForCausalLM"], "model_type": "qwen2", "hidden_act": "silu",
  "hidden_size": 3584, "intermediate_size": 18944, "num_hidden_layers": 28,
  "num_attention_heads": 28, "num_key_value_heads": 4, "max_position_embeddings": 32768,
  "max_window_layers": 28, "rms_norm_eps": 1e-06, "rope_theta": 1000000.0, "sliding_window": 131072,
  "tie_word_embeddings": false, "torch_dtype": "bfloat16", "use_sliding_window": false,
  "vocab_size": 152064, "qk_norm": true, "layer_module": "Qwen2MoTDecoderLayer"
})";
const char* kBagelVit = R"({
  "hidden_size": 1152, "image_size": 980, "intermediate_size": 4304, "model_type": "siglip_vision_model",
  "num_attention_heads": 16, "num_hidden_layers": 27, "patch_size": 14, "hidden_act": "gelu_pytorch_tanh",
  "layer_norm_eps": 1e-06
})";

void write_text(const fs::path& p, const std::string& s) {
  std::ofstream f(p);
  f << s;
  if (!f) throw Error(p.string(), "cannot write");
}

// What the checkpoint holds for `module` (int8 placeholders listed as the float weight they stand
// for; their scales are not checkpoint tensors), all float tensors stored as `stored`.
struct Entry {
  io::RawTensor raw;
  torch::Tensor value;  // non-float tensors only: written as built
};
std::vector<Entry> checkpoint_layout(torch::nn::Module& module, DType stored) {
  std::vector<Entry> out;
  for (auto& [name, t] : io::named_state(module)) {
    if (ends_with(name, "weight_scale")) continue;
    Entry e;
    e.raw.name = name;
    e.raw.shape = t.sizes().vec();
    const bool is_float = c10::isFloatingType(t.scalar_type()) || t.scalar_type() == torch::kChar;
    e.raw.dtype = is_float ? stored : from_torch(t.scalar_type());
    if (!is_float) e.value = t.contiguous().clone();
    e.raw.data = nullptr;
    out.push_back(std::move(e));
  }
  return out;
}

// Draws every float tensor of the layout (HF-style init) and writes the file one tensor at a time.
void write_random(const fs::path& path, const std::vector<Entry>& layout, uint64_t seed) {
  at::Generator gen = generate::make_generator(torch::kCPU, seed);
  constexpr int64_t kChunk = int64_t{1} << 24, kSlack = int64_t{1} << 22;
  const auto pool = torch::empty({kChunk + kSlack}).normal_(0.0, 0.02, gen);
  torch::Tensor current;
  std::vector<io::RawTensor> raw;
  for (const auto& e : layout) raw.push_back(e.raw);
  size_t done = 0;
  const auto t0 = clk::now();
  io::write_safetensors_streamed(path.string(), raw, [&](size_t i) -> const void* {
    const auto& e = layout[i];
    if (e.value.defined()) return e.value.data_ptr();
    const auto dt = to_torch(e.raw.dtype);
    current = torch::empty(e.raw.shape, torch::TensorOptions().dtype(dt));
    const bool norm = e.raw.shape.size() == 1 && e.raw.name.find("norm") != std::string::npos &&
                      ends_with(e.raw.name, ".weight");
    if (norm) current.fill_(1.0);
    else if (ends_with(e.raw.name, ".bias")) current.zero_();
    else {
      // Chunks of a pool of N(0, 0.02^2) draws at a random offset each: drawing 15 B normals one by
      // one runs at ~30 M/s (8 min for BAGEL), a copy at disk speed.
      auto flat = current.view({-1});
      for (int64_t a = 0; a < flat.numel(); a += kChunk) {
        const int64_t n = std::min(kChunk, flat.numel() - a);
        const int64_t off = torch::randint(kSlack, {1}, gen, torch::kLong).item<int64_t>();
        flat.narrow(0, a, n).copy_(pool.narrow(0, off, n));
      }
    }
    if (++done % 64 == 0)
      std::fprintf(stderr, "  written %zu / %zu tensors (%.0f s)\n", done, layout.size(), secs(t0));
    return current.data_ptr();
  });
}

struct RunResult {
  int rc = -1;
  bool killed = false;
  double wall_s = 0, peak_gib = 0, load_s = -1;
  std::string last_line;
};

// Runs argv with stdout/stderr to `log`; kills it when its RSS passes limit_gib.
RunResult run_child(const std::vector<std::string>& argv, const fs::path& log, double limit_gib) {
  RunResult r;
  const auto t0 = clk::now();
  const pid_t pid = fork();
  if (pid < 0) throw Error("fork", std::strerror(errno));
  if (pid == 0) {
    const int fd = ::open(log.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd >= 0) {
      dup2(fd, 1);
      dup2(fd, 2);
    }
    std::vector<char*> args;
    for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);
    execv(args[0], args.data());
    std::perror("execv");
    _exit(127);
  }
  int status = 0;
  struct rusage ru {};
  for (;;) {
    const pid_t w = wait4(pid, &status, WNOHANG, &ru);
    if (w == pid) break;
    std::ifstream st("/proc/" + std::to_string(pid) + "/status");
    std::string line;
    while (std::getline(st, line))
      if (line.rfind("VmRSS:", 0) == 0 && std::atof(line.c_str() + 6) * 1024.0 / kGiB > limit_gib && !r.killed) {
        kill(pid, SIGKILL);
        r.killed = true;
      }
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  r.wall_s = secs(t0);
  r.rc = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  r.peak_gib = static_cast<double>(ru.ru_maxrss) * 1024.0 / kGiB;
  std::ifstream in(log);
  std::string line;
  while (std::getline(in, line)) {
    const auto at = line.find("load model: ");
    if (at != std::string::npos) r.load_s = std::atof(line.c_str() + at + 12);
    if (!line.empty()) r.last_line = line;
  }
  return r;
}

uint64_t folder_bytes(const fs::path& d) {
  uint64_t n = 0;
  for (const auto& e : fs::directory_iterator(d))
    if (e.is_regular_file()) n += e.file_size();
  return n;
}

}  // namespace

int main(int argc, char** argv) {
  std::string model = "janus-pro-7b", dtype = "bf16", omni_bin = "build/omni", fixtures = "tests/fixtures";
  std::string dir = fs::temp_directory_path().string();
  bool keep = false, skip_generate = false;
  double rss_limit = 21.0;
  int steps = 3, size = 256, tokens = 16;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto next = [&]() -> std::string {
      if (i + 1 >= argc) {
        std::fprintf(stderr, "error: %s: needs a value\n", a.c_str());
        std::exit(2);
      }
      return argv[++i];
    };
    if (a == "--model") model = next();
    else if (a == "--dtype") dtype = next();
    else if (a == "--omni") omni_bin = next();
    else if (a == "--fixtures") fixtures = next();
    else if (a == "--dir") dir = next();
    else if (a == "--keep") keep = true;
    else if (a == "--skip_generate") skip_generate = true;
    else if (a == "--rss_limit_gib") rss_limit = std::atof(next().c_str());
    else if (a == "--steps") steps = std::atoi(next().c_str());
    else if (a == "--size") size = std::atoi(next().c_str());
    else if (a == "--tokens") tokens = std::atoi(next().c_str());
    else {
      std::fprintf(stderr, "error: %s: unknown flag\n", a.c_str());
      return 2;
    }
  }
  const bool janus = model == "janus-pro-7b";
  if (!janus && model != "bagel-7b-mot") {
    std::fprintf(stderr, "error: --model %s: expected janus-pro-7b or bagel-7b-mot\n", model.c_str());
    return 2;
  }
  omni_bin = fs::absolute(omni_bin).string();
  if (!fs::is_regular_file(omni_bin)) {
    std::fprintf(stderr, "error: --omni %s: no such file (build omni_cli first)\n", omni_bin.c_str());
    return 2;
  }
  const fs::path fx = fs::absolute(fixtures) / (janus ? "janus_tiny" : "bagel_tiny");
  const fs::path out = fs::path(dir) / ("omni_full_size_" + model);
  try {
    torch::InferenceMode inference;
    fs::remove_all(out);
    fs::create_directories(out);
    const auto t_write = clk::now();
    if (janus) {
      write_text(out / "config.json", kJanusPro7B);
      for (const char* f : {"tokenizer.json", "preprocessor_config.json", "processor_config.json"})
        fs::copy_file(fx / f, out / f);
      std::vector<Entry> layout;
      {
        nn::NarrowLinearBuild placeholders(torch::kChar);  // decoder linears: untouched int8 [out, in]
        io::DefaultDtypeGuard dg(torch::kBFloat16);
        const auto cfg = models::janus::JanusConfig::from_file((out / "config.json").string());
        models::janus::JanusModel m(cfg);
        layout = checkpoint_layout(*m.net(), DType::BF16);
      }
      write_random(out / "model.safetensors", layout, 0);
    } else {
      write_text(out / "llm_config.json", kBagelLlm);
      write_text(out / "vit_config.json", kBagelVit);
      fs::copy_file(fx / "tokenizer.json", out / "tokenizer.json");
      // BagelConfig::load checks the weight files exist; the writers replace these by rename.
      write_text(out / "ema.safetensors", "");
      write_text(out / "ae.safetensors", "");
      const auto cfg = bagel::BagelConfig::load(out.string());
      {
        std::vector<Entry> vae_layout;
        {
          nn::FluxAutoEncoderImpl vae(cfg.vae);
          vae_layout = checkpoint_layout(vae, DType::F32);
        }
        write_random(out / "ae.safetensors", vae_layout, 1);
      }
      std::vector<Entry> layout;
      {
        nn::NarrowLinearBuild placeholders(torch::kChar);
        io::DefaultDtypeGuard dg(torch::kBFloat16);
        bagel::BagelImpl m(cfg);
        layout = checkpoint_layout(m, DType::BF16);
      }
      write_random(out / "ema.safetensors", layout, 0);
    }
    const double write_s = secs(t_write);
    const double file_gb = folder_bytes(out) / 1e9;
    std::printf("%s: %.2f GB written to %s in %.0f s\n", model.c_str(), file_gb, out.c_str(), write_s);
    std::fflush(stdout);

    const std::string image = (fx / (janus ? "test_image.png" : "und_image.png")).string();
    std::vector<std::pair<std::string, std::vector<std::string>>> runs;
    runs.push_back({"understand", {omni_bin, "infer", "--model_path", out.string(), "--mode", "understand", "--image",
                                   image, "--prompt", "Describe this image.", "--max_new_tokens",
                                   std::to_string(tokens), "--dtype", dtype}});
    if (!skip_generate) {
      std::vector<std::string> g = {omni_bin, "infer", "--model_path", out.string(), "--mode", "generate", "--prompt",
                                    "a red apple on a wooden table", "--output", (out / "generated.png").string(),
                                    "--dtype", dtype, "--seed", "0"};
      if (!janus)
        for (const std::string& s : {std::string("--steps"), std::to_string(steps), std::string("--height"),
                                     std::to_string(size), std::string("--width"), std::to_string(size)})
          g.push_back(s);
      runs.push_back({janus ? "generate 384^2 (576 tokens)" : "generate " + std::to_string(size) + "^2, " +
                                                                  std::to_string(steps) + " steps",
                      g});
    }
    std::printf("\n| %s `--dtype %s` | load | wall | peak RSS | exit |\n|---|---:|---:|---:|---|\n", model.c_str(),
                dtype.c_str());
    std::fflush(stdout);
    int worst = 0;
    for (const auto& [what, args] : runs) {
      const auto r = run_child(args, out / "run.log", rss_limit);
      std::printf("| %s | %.1f s | %.1f s | %.2f GiB | %s |\n", what.c_str(), r.load_s, r.wall_s, r.peak_gib,
                  r.killed ? "killed at the RSS limit" : (r.rc == 0 ? "0" : ("rc " + std::to_string(r.rc) + ": " + r.last_line).c_str()));
      std::fflush(stdout);
      if (r.rc != 0) worst = 1;
    }
    if (!keep) fs::remove_all(out);
    return worst;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    if (!keep) fs::remove_all(out);
    return 1;
  }
}
