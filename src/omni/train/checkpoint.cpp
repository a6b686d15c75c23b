#include "omni/train/checkpoint.h"

#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <torch/torch.h>

#include "omni/core/error.h"
#include "omni/core/log.h"
#include "omni/dist/fsdp.h"
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

std::string shard_suffix(int rank, int world) {
  return ".shard-" + std::to_string(rank) + "-of-" + std::to_string(world);
}

// One kind of a checkpoint's tensors (model / optimizer), whole, from either layout.
class SavedState {
 public:
  SavedState(const fs::path& dir, const std::string& stem, int shards) : shards_(shards) {
    for (int r = 0; r < shards; ++r) {
      const fs::path p = dir / (stem + (shards > 1 ? shard_suffix(r, shards) : "") + ".safetensors");
      if (!fs::is_regular_file(p))
        throw Error(dir.string(), "has no " + p.filename().string() + (shards > 1 ? " (a torn sharded checkpoint)" : ""));
      files_.push_back(io::Checkpoint::open(p.string()));
    }
    for (const auto& f : files_)
      if (f.tensors().size() != files_[0].tensors().size())
        throw Error(dir.string(), "its " + stem + " shards hold different tensors (a torn sharded checkpoint)");
  }
  bool contains(const std::string& name) const { return files_[0].contains(name); }
  size_t count() const { return files_[0].tensors().size(); }
  at::Tensor whole(const std::string& name, const std::vector<int64_t>& shape) const {
    const int64_t numel = numel_of(shape);
    at::Tensor flat;
    if (shards_ == 1) {
      flat = files_[0].get(name).reshape(-1);
    } else {
      std::vector<at::Tensor> parts;
      for (const auto& f : files_) {
        if (!f.contains(name)) throw Error(f.label(), "has no '" + name + "' (a torn sharded checkpoint)");
        parts.push_back(f.get(name).reshape(-1));
      }
      flat = torch::cat(parts);
      if (flat.numel() >= numel) flat = flat.narrow(0, 0, numel);
    }
    if (flat.numel() != numel) throw Error(files_[0].label(), "'" + name + "' has another shape than the model's");
    return flat.view(shape);
  }

 private:
  int shards_;
  std::vector<io::Checkpoint> files_;
};

// What this process holds of a whole tensor of `e`: all of it, or its shard (flattened, padded).
at::Tensor local_part(const at::Tensor& whole, const CheckpointEntry& e, const Sharding& sh) {
  return sh.sharded ? dist::shard_slice(whole, e.value.numel(), sh.rank, sh.world) : whole.view(e.value.sizes());
}

}  // namespace

std::string save_checkpoint(const std::string& output_dir, const CheckpointContents& c,
                            const std::function<void(const std::string& dir)>& extra) {
  const Sharding& sh = c.sharding;
  const bool lead = sh.rank == 0;
  auto together = [&] {
    if (sh.sharded && sh.barrier) sh.barrier();
  };
  const fs::path root = fs::path(output_dir) / "checkpoints";
  const fs::path final_dir = root / ("global_step_" + std::to_string(c.state.global_step));
  const fs::path tmp = root / ("global_step_" + std::to_string(c.state.global_step) + ".tmp");
  std::error_code ec;
  if (lead) {
    fs::remove_all(tmp, ec);
    fs::create_directories(tmp);
  }
  together();

  const std::string suffix = sh.sharded ? shard_suffix(sh.rank, sh.world) : "";
  std::vector<std::pair<std::string, torch::Tensor>> model, optim;
  for (const auto& e : c.parameters) {
    model.emplace_back(e.name, e.value.detach().to(torch::kCPU));
    const auto it = c.optimizer->state().find(optimizer_key(e.value));
    if (it == c.optimizer->state().end()) continue;  // never stepped (no gradient yet)
    const auto& st = static_cast<const torch::optim::AdamWParamState&>(*it->second);
    optim.emplace_back("exp_avg/" + e.name, st.exp_avg().to(torch::kCPU));
    optim.emplace_back("exp_avg_sq/" + e.name, st.exp_avg_sq().to(torch::kCPU));
    optim.emplace_back("step/" + e.name, torch::tensor({st.step()}, torch::kInt64));
  }
  const fs::path model_file = tmp / ("model" + suffix + ".safetensors"), optim_file = tmp / ("optimizer" + suffix + ".safetensors");
  io::save_safetensors(model_file.string(), model);
  maybe_die_mid_save(c.state.global_step);
  io::save_safetensors(optim_file.string(), optim);
  sync_path(model_file);
  sync_path(optim_file);
  together();  // every shard is on disk: an export may read them
  if (extra) extra(tmp.string());
  together();
  if (!lead) return final_dir.string();
  for (const auto& e : fs::recursive_directory_iterator(tmp))
    if (e.is_regular_file() && e.path().filename().string().find(".shard-") == std::string::npos) sync_path(e.path());
  json st = {{"global_step", c.state.global_step},
             {"epoch", c.state.data.epoch},
             {"cursor", c.state.data.cursor},
             {"skipped_samples", c.state.skipped_samples},
             {"shards", sh.sharded ? sh.world : 1}};
  write_text(tmp / "trainer_state.json", st.dump(2) + "\n");
  write_text(tmp / "config.yaml", c.config_yaml);
  sync_path(tmp / "trainer_state.json");
  sync_path(tmp / "config.yaml");
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
  std::ifstream f(d / "trainer_state.json");
  json st;
  try {
    f >> st;
  } catch (const json::exception& e) {
    throw Error((d / "trainer_state.json").string(), std::string("not valid JSON: ") + e.what());
  }
  const int shards = st.value("shards", 1);
  if (shards < 1) throw Error((d / "trainer_state.json").string(), "shards must be at least 1");
  const SavedState model(d, "model", shards), optim(d, "optimizer", shards);
  const Sharding& sh = into.sharding;
  torch::NoGradGuard ng;
  for (const auto& e : into.parameters) {
    if (!model.contains(e.name))
      throw Error(dir, "has no '" + e.name + "' (the checkpoint was written with other frozen / trainable parameters)");
    e.value.detach().copy_(local_part(model.whole(e.name, e.shape), e, sh));
  }
  if (model.count() != into.parameters.size())
    throw Error(dir, "holds " + std::to_string(model.count()) + " trainable tensors, this run trains " +
                         std::to_string(into.parameters.size()) + " (other freezing keys?)");
  auto& states = into.optimizer->state();
  for (const auto& e : into.parameters) {
    if (!optim.contains("exp_avg/" + e.name)) continue;
    auto s = std::make_unique<torch::optim::AdamWParamState>();
    s->exp_avg(local_part(optim.whole("exp_avg/" + e.name, e.shape), e, sh).clone());
    s->exp_avg_sq(local_part(optim.whole("exp_avg_sq/" + e.name, e.shape), e, sh).clone());
    s->step(optim.whole("step/" + e.name, {}).item<int64_t>());
    states[optimizer_key(e.value)] = std::move(s);
  }
  TrainerState s;
  s.global_step = st.value("global_step", int64_t{0});
  s.data.epoch = st.value("epoch", int64_t{0});
  s.data.cursor = st.value("cursor", int64_t{0});
  s.skipped_samples = st.value("skipped_samples", int64_t{0});
  return s;
}

std::function<at::Tensor(const std::string&)> saved_parameters(const std::string& dir, const CheckpointContents& c) {
  auto state = std::make_shared<SavedState>(fs::path(dir), "model", c.sharding.sharded ? c.sharding.world : 1);
  auto shapes = std::make_shared<std::map<std::string, std::vector<int64_t>>>();
  for (const auto& e : c.parameters) (*shapes)[e.name] = e.shape;
  return [state, shapes](const std::string& name) -> at::Tensor {
    const auto it = shapes->find(name);
    return it == shapes->end() ? at::Tensor() : state->whole(name, it->second);
  };
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
