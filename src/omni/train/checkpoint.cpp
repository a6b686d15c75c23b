#include "omni/train/checkpoint.h"

#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <torch/serialize.h>

#include "omni/core/error.h"
#include "omni/core/log.h"
#include "omni/io/checkpoint_torch.h"
#include "omni/io/trace_torch.h"

namespace omni::train {
namespace fs = std::filesystem;
using json = nlohmann::json;

namespace {

const char* kMarker = "COMPLETE";

void write_text(const fs::path& p, const std::string& text) {
  std::ofstream f(p, std::ios::binary | std::ios::trunc);
  f << text;
  f.close();
  if (!f) throw Error(p.string(), "cannot write");
}

void sync_path(const fs::path& p) {
  const int fd = ::open(p.c_str(), O_RDONLY);
  if (fd >= 0) {
    ::fsync(fd);
    ::close(fd);
  }
}

// global_step_N -> N (-1 for anything else, e.g. a .tmp folder).
int64_t step_of(const fs::path& dir) {
  const std::string name = dir.filename().string();
  const std::string pre = "global_step_";
  if (name.rfind(pre, 0) != 0 || name.size() == pre.size()) return -1;
  const std::string num = name.substr(pre.size());
  if (num.find_first_not_of("0123456789") != std::string::npos) return -1;
  return std::stoll(num);
}

std::vector<std::pair<int64_t, fs::path>> complete_checkpoints(const std::string& output_dir) {
  std::vector<std::pair<int64_t, fs::path>> out;
  const fs::path root = fs::path(output_dir) / "checkpoints";
  std::error_code ec;
  if (!fs::is_directory(root, ec)) return out;
  for (const auto& e : fs::directory_iterator(root, ec)) {
    const int64_t s = step_of(e.path());
    if (s >= 0 && e.is_directory() && fs::is_regular_file(e.path() / kMarker)) out.emplace_back(s, e.path());
  }
  std::sort(out.begin(), out.end());
  return out;
}

// Test hook: OMNI_TEST_DIE_DURING_SAVE=N kills the process (SIGKILL, no cleanup) halfway through
// writing the checkpoint of step N, as a kill -9 or a power loss would.
void maybe_die_mid_save(int64_t step) {
  const char* v = std::getenv("OMNI_TEST_DIE_DURING_SAVE");
  if (v && std::string(v) == std::to_string(step)) {
    std::fflush(nullptr);
    ::kill(::getpid(), SIGKILL);
  }
}

}  // namespace

std::string save_checkpoint(const std::string& output_dir, const CheckpointContents& c,
                            const std::function<void(const std::string& dir)>& extra) {
  const fs::path root = fs::path(output_dir) / "checkpoints";
  const fs::path final_dir = root / ("global_step_" + std::to_string(c.state.global_step));
  const fs::path tmp = root / ("global_step_" + std::to_string(c.state.global_step) + ".tmp");
  std::error_code ec;
  fs::remove_all(tmp, ec);
  fs::create_directories(tmp);

  std::vector<std::pair<std::string, torch::Tensor>> params;
  for (const auto& [name, p] : c.parameters) params.emplace_back(name, p.detach().to(torch::kCPU));
  io::save_safetensors((tmp / "model.safetensors").string(), params);
  {
    torch::serialize::OutputArchive ar;
    c.optimizer->save(ar);
    ar.save_to((tmp / "optimizer.pt").string());
  }
  maybe_die_mid_save(c.state.global_step);
  io::save_safetensors((tmp / "rng.safetensors").string(), {{"generator", c.generator->get_state()}});
  json st = {{"global_step", c.state.global_step},
             {"epoch", c.state.data.epoch},
             {"cursor", c.state.data.cursor},
             {"skipped_samples", c.state.skipped_samples}};
  write_text(tmp / "trainer_state.json", st.dump(2) + "\n");
  write_text(tmp / "config.yaml", c.config_yaml);
  if (extra) extra(tmp.string());
  for (const auto& e : fs::recursive_directory_iterator(tmp))
    if (e.is_regular_file()) sync_path(e.path());
  write_text(tmp / kMarker, "global_step " + std::to_string(c.state.global_step) + "\n");
  sync_path(tmp / kMarker);
  fs::remove_all(final_dir, ec);  // a re-run of the same step replaces it
  fs::rename(tmp, final_dir);
  sync_path(root);
  return final_dir.string();
}

std::optional<std::string> latest_checkpoint(const std::string& output_dir) {
  auto all = complete_checkpoints(output_dir);
  if (all.empty()) return std::nullopt;
  return all.back().second.string();
}

TrainerState load_checkpoint(const std::string& dir, const CheckpointContents& into) {
  const fs::path d(dir);
  std::error_code ec;
  if (!fs::is_directory(d, ec)) throw Error(dir, "no such checkpoint folder (train.load_path)");
  if (!fs::is_regular_file(d / kMarker))
    throw Error(dir, "not a complete checkpoint (no COMPLETE marker: the save was interrupted)");
  auto saved = io::Checkpoint::open((d / "model.safetensors").string());
  {
    torch::NoGradGuard ng;
    for (const auto& [name, p] : into.parameters) {
      if (!saved.contains(name))
        throw Error(dir, "has no '" + name + "' (the checkpoint was written with other frozen / trainable parameters)");
      auto t = saved.get(name);
      if (t.sizes() != p.sizes()) throw Error(dir, "'" + name + "' has another shape than the model's");
      p.detach().copy_(t);
    }
  }
  if (saved.tensors().size() != into.parameters.size())
    throw Error(dir, "holds " + std::to_string(saved.tensors().size()) + " trainable tensors, this run trains " +
                         std::to_string(into.parameters.size()) + " (other freezing keys?)");
  {
    torch::serialize::InputArchive ar;
    ar.load_from((d / "optimizer.pt").string());
    into.optimizer->load(ar);
  }
  auto rng = io::Checkpoint::open((d / "rng.safetensors").string());
  into.generator->set_state(rng.get("generator").clone());
  std::ifstream f(d / "trainer_state.json");
  json st;
  try {
    f >> st;
  } catch (const json::exception& e) {
    throw Error((d / "trainer_state.json").string(), std::string("not valid JSON: ") + e.what());
  }
  TrainerState s;
  s.global_step = st.value("global_step", int64_t{0});
  s.data.epoch = st.value("epoch", int64_t{0});
  s.data.cursor = st.value("cursor", int64_t{0});
  s.skipped_samples = st.value("skipped_samples", int64_t{0});
  return s;
}

void prune_checkpoints(const std::string& output_dir, int64_t limit) {
  const fs::path root = fs::path(output_dir) / "checkpoints";
  std::error_code ec;
  if (fs::is_directory(root, ec))
    for (const auto& e : fs::directory_iterator(root, ec)) {
      const std::string name = e.path().filename().string();
      if (name.size() > 4 && name.compare(name.size() - 4, 4, ".tmp") == 0) fs::remove_all(e.path(), ec);
    }
  if (limit <= 0) return;
  auto all = complete_checkpoints(output_dir);
  for (size_t i = 0; i + static_cast<size_t>(limit) < all.size(); ++i) {
    log_info("removing old checkpoint ", all[i].second.string(), " (train.save_total_limit ", limit, ")");
    fs::remove_all(all[i].second, ec);
  }
}

}  // namespace omni::train
