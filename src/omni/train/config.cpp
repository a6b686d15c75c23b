#include "omni/train/config.h"

#include <yaml-cpp/yaml.h>

#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <functional>
#include <map>
#include <set>
#include <cerrno>
#include <cstdio>

#include "omni/core/error.h"
#include "omni/core/strings.h"

namespace omni::train {
namespace {

// One key of the schema: how to read it from a YAML node into a Config, and how to print it.
struct Key {
  std::string section, name, help;
  std::function<void(Config&, const YAML::Node&, const std::string& where)> read;
  std::function<YAML::Node(const Config&)> write;
  std::string dotted() const { return section + "." + name; }
};

std::string scalar_text(const YAML::Node& n) {
  if (n.IsScalar()) return "'" + n.Scalar() + "'";
  if (n.IsSequence()) return "a list";
  if (n.IsMap()) return "a mapping";
  return "nothing";
}

bool to_bool(const YAML::Node& n, const std::string& where) {
  if (n.IsScalar()) {
    const std::string s = ascii_lower(n.Scalar());
    if (s == "true" || s == "yes" || s == "on" || s == "1") return true;
    if (s == "false" || s == "no" || s == "off" || s == "0") return false;
  }
  throw Error(where, "expected true or false, got " + scalar_text(n));
}
int64_t to_int(const YAML::Node& n, const std::string& where) {
  if (n.IsScalar()) {
    const std::string& s = n.Scalar();
    char* end = nullptr;
    errno = 0;
    const long long v = std::strtoll(s.c_str(), &end, 10);
    if (!s.empty() && end && *end == '\0' && errno == 0) return v;
    // 1e6-style integers are common in configs; accept them when they are whole.
    const double d = std::strtod(s.c_str(), &end);
    if (!s.empty() && end && *end == '\0' && std::isfinite(d) && d == std::floor(d) && std::fabs(d) < 9e18)
      return static_cast<int64_t>(d);
  }
  throw Error(where, "expected an integer, got " + scalar_text(n));
}
double to_double(const YAML::Node& n, const std::string& where) {
  if (n.IsScalar()) {
    const std::string& s = n.Scalar();
    char* end = nullptr;
    const double d = std::strtod(s.c_str(), &end);
    if (!s.empty() && end && *end == '\0' && std::isfinite(d)) return d;
  }
  throw Error(where, "expected a number, got " + scalar_text(n));
}
std::string to_string(const YAML::Node& n, const std::string& where) {
  if (n.IsNull()) return "";
  if (n.IsScalar()) return n.Scalar();
  throw Error(where, "expected a string, got " + scalar_text(n));
}

// The shortest decimal text that reads back as the same double (1e-05, not 1.0000000000000001e-05).
std::string shortest(double v) {
  char buf[32];
  for (int prec = 1; prec <= 17; ++prec) {
    std::snprintf(buf, sizeof buf, "%.*g", prec, v);
    if (std::strtod(buf, nullptr) == v) break;
  }
  return buf;
}

template <typename Section, typename T>
Key make_key(std::string section, std::string name, Section Config::*sec, T Section::*field, std::string help) {
  Key k;
  k.section = std::move(section);
  k.name = std::move(name);
  k.help = std::move(help);
  k.read = [sec, field](Config& c, const YAML::Node& n, const std::string& where) {
    T& dst = (c.*sec).*field;
    if constexpr (std::is_same_v<T, bool>) dst = to_bool(n, where);
    else if constexpr (std::is_same_v<T, int64_t>) dst = to_int(n, where);
    else if constexpr (std::is_same_v<T, double>) dst = to_double(n, where);
    else if constexpr (std::is_same_v<T, std::string>) dst = to_string(n, where);
    else if constexpr (std::is_same_v<T, std::vector<std::string>>) {
      dst.clear();
      if (n.IsSequence()) {
        for (const auto& e : n) dst.push_back(to_string(e, where));
      } else if (!n.IsNull()) {
        dst.push_back(to_string(n, where));
      }
    } else if constexpr (std::is_same_v<T, std::vector<double>>) {
      if (!n.IsSequence()) throw Error(where, "expected a list of numbers, got " + scalar_text(n));
      dst.clear();
      for (const auto& e : n) dst.push_back(to_double(e, where));
    }
  };
  k.write = [sec, field](const Config& c) {
    const T& v = (c.*sec).*field;
    YAML::Node n;
    if constexpr (std::is_same_v<T, std::vector<std::string>> || std::is_same_v<T, std::vector<double>>) {
      n = YAML::Node(YAML::NodeType::Sequence);
      for (const auto& e : v) {
        if constexpr (std::is_same_v<T, std::vector<double>>) n.push_back(shortest(e));
        else n.push_back(e);
      }
    } else if constexpr (std::is_same_v<T, double>) {
      n = shortest(v);
    } else {
      n = v;
    }
    return n;
  };
  return k;
}

// Freezing keys live in train.* but in their own struct (FreezeConfig).
template <typename T>
Key freeze_key(std::string name, T FreezeConfig::*field, std::string help) {
  Key k;
  k.section = "train";
  k.name = std::move(name);
  k.help = std::move(help);
  k.read = [field](Config& c, const YAML::Node& n, const std::string& where) {
    if constexpr (std::is_same_v<T, bool>) c.train.freeze.*field = to_bool(n, where);
    else c.train.freeze.*field = to_int(n, where);
  };
  k.write = [field](const Config& c) { return YAML::Node(c.train.freeze.*field); };
  return k;
}

const std::vector<Key>& schema() {
  static const std::vector<Key> keys = [] {
    using C = Config;
    std::vector<Key> k;
    k.push_back(make_key("model", "model_path", &C::model, &ModelConfig::model_path,
                         "checkpoint directory in its family's shipped layout (required)"));
    k.push_back(make_key("data", "train_path", &C::data, &DataConfig::train_path, "JSONL file or list of files (required)"));
    k.push_back(make_key("data", "image_root", &C::data, &DataConfig::image_root,
                         "folder image paths are relative to (default: each JSONL file's folder)"));
    k.push_back(make_key("data", "max_seq_len", &C::data, &DataConfig::max_seq_len, "longest sample in tokens [4096]"));
    k.push_back(make_key("data", "skip_bad_samples", &C::data, &DataConfig::skip_bad_samples,
                         "skip and count bad samples instead of failing [false]"));
    k.push_back(make_key("data", "allow_absolute_paths", &C::data, &DataConfig::allow_absolute_paths,
                         "accept absolute image paths and '..' [false]"));
    k.push_back(make_key("data", "text_cond_dropout_prob", &C::data, &DataConfig::text_cond_dropout_prob,
                         "BAGEL CFG dropout of user text [0.1]"));
    k.push_back(make_key("data", "vit_cond_dropout_prob", &C::data, &DataConfig::vit_cond_dropout_prob,
                         "BAGEL CFG dropout of ViT input images [0.3]"));
    k.push_back(make_key("data", "vae_cond_dropout_prob", &C::data, &DataConfig::vae_cond_dropout_prob,
                         "BAGEL CFG dropout of clean VAE input images [0.3]"));
    k.push_back(make_key("data", "cfg_txt_uncond_drop_prob", &C::data, &DataConfig::cfg_txt_uncond_drop_prob,
                         "SenseNova-U1 CFG dropout of the prompt [0.1]"));
    k.push_back(make_key("data", "cfg_img_uncond_drop_prob", &C::data, &DataConfig::cfg_img_uncond_drop_prob,
                         "SenseNova-U1 CFG dropout of an edit's input images [0]"));
    k.push_back(make_key("data", "cfg_txtimg_uncond_drop_prob", &C::data, &DataConfig::cfg_txtimg_uncond_drop_prob,
                         "SenseNova-U1 CFG dropout of prompt and input images [0.1]"));
    using T = TrainConfig;
    k.push_back(make_key("train", "output_dir", &C::train, &T::output_dir, "where metrics, checkpoints and exports go (required)"));
    k.push_back(make_key("train", "micro_batch_size", &C::train, &T::micro_batch_size, "samples per micro-batch [1]"));
    k.push_back(make_key("train", "global_batch_size", &C::train, &T::global_batch_size,
                         "samples per optimizer step [micro_batch_size]"));
    k.push_back(make_key("train", "dyn_bsz", &C::train, &T::dyn_bsz,
                         "fill micro-batches up to max_seq_len x micro_batch_size tokens [false]"));
    k.push_back(make_key("train", "max_steps", &C::train, &T::max_steps, "optimizer steps (0 = num_train_epochs) [0]"));
    k.push_back(make_key("train", "num_train_epochs", &C::train, &T::num_train_epochs, "epochs when max_steps is 0 [1]"));
    k.push_back(make_key("train", "lr", &C::train, &T::lr, "peak learning rate [1e-5]"));
    k.push_back(make_key("train", "lr_min", &C::train, &T::lr_min, "learning rate the decay ends at [0]"));
    k.push_back(make_key("train", "lr_scheduler", &C::train, &T::lr_scheduler, "constant | cosine | linear [constant]"));
    k.push_back(make_key("train", "warmup_steps", &C::train, &T::warmup_steps, "linear warmup steps [0]"));
    k.push_back(make_key("train", "weight_decay", &C::train, &T::weight_decay, "AdamW weight decay [0]"));
    k.push_back(make_key("train", "betas", &C::train, &T::betas, "AdamW betas [[0.9, 0.999]]"));
    k.push_back(make_key("train", "eps", &C::train, &T::eps, "AdamW epsilon [1e-8]"));
    k.push_back(make_key("train", "max_grad_norm", &C::train, &T::max_grad_norm, "gradient clipping norm, <= 0 off [1.0]"));
    k.push_back(make_key("train", "seed", &C::train, &T::seed, "seed of the run's generators [42]"));
    k.push_back(make_key("train", "ce_weight", &C::train, &T::ce_weight, "weight of the text cross-entropy [1.0]"));
    k.push_back(make_key("train", "mse_weight", &C::train, &T::mse_weight, "weight of the generation loss [1.0]"));
    k.push_back(freeze_key("freeze_vit", &FreezeConfig::freeze_vit, "freeze the understanding vision encoder [false]"));
    k.push_back(freeze_key("freeze_vae", &FreezeConfig::freeze_vae, "freeze the VAE / VQ tokenizer [true]"));
    k.push_back(freeze_key("freeze_und", &FreezeConfig::freeze_und, "freeze the understanding path (BAGEL) [false]"));
    k.push_back(freeze_key("freeze_llm", &FreezeConfig::freeze_llm, "freeze the language model [false]"));
    k.push_back(freeze_key("freeze_gen_modules", &FreezeConfig::freeze_gen_modules, "freeze the generation modules [false]"));
    k.push_back(freeze_key("freeze_mlp", &FreezeConfig::freeze_mlp, "freeze the vision-to-LLM connector [false]"));
    k.push_back(freeze_key("unfreeze_mot_gen", &FreezeConfig::unfreeze_mot_gen, "train the MoT generation branch [false]"));
    k.push_back(freeze_key("unfreeze_vit_layers", &FreezeConfig::unfreeze_vit_layers,
                           "train ViT layers[N:] (-N = the last N) [0 = none]"));
    k.push_back(freeze_key("unfreeze_lm_head", &FreezeConfig::unfreeze_lm_head, "train the LM head [false]"));
    k.push_back(make_key("train", "save_steps", &C::train, &T::save_steps, "checkpoint every N steps (0 = at the end) [0]"));
    k.push_back(make_key("train", "save_total_limit", &C::train, &T::save_total_limit, "checkpoints kept (0 = all) [0]"));
    k.push_back(make_key("train", "load_path", &C::train, &T::load_path,
                         "resume from a checkpoint folder, or 'auto' = the newest complete one [none]"));
    k.push_back(make_key("train", "save_hf_weights", &C::train, &T::save_hf_weights,
                         "also write hf_ckpt/ (a model folder omni infer loads) with each checkpoint [false]"));
    k.push_back(make_key("train", "log_steps", &C::train, &T::log_steps, "log a line every N steps [1]"));
    k.push_back(make_key("train", "device", &C::train, &T::device, "cpu | cuda | cuda:N [cpu]"));
    k.push_back(make_key("train", "dtype", &C::train, &T::dtype, "parameter (compute) dtype: fp32 | bf16 [fp32]"));
    k.push_back(make_key("train", "master_dtype", &C::train, &T::master_dtype,
                         "what AdamW steps under bf16: fp32 (master weights) | same (the bf16 parameters) [fp32]"));
    k.push_back(make_key("train", "threads", &C::train, &T::threads, "intra-op threads (0 = OMP_NUM_THREADS, else the CPUs shared among the node's processes) [0]"));
    k.push_back(make_key("train", "data_parallel_mode", &C::train, &T::data_parallel_mode,
                         "with several processes: fsdp (parameters, gradients and AdamW state 1/N per process) | "
                         "ddp (replicated, summed gradients) [fsdp]"));
    k.push_back(make_key("train", "ddp_bucket_mb", &C::train, &T::ddp_bucket_mb,
                         "ddp: gradient all-reduce bucket size, started during the backward [25]"));
    k.push_back(make_key("train", "ulysses_size", &C::train, &T::ulysses_size,
                         "sequence parallelism: processes sharing each sequence's rows, all-to-all around attention "
                         "(must divide the process count and the decoder's head counts) [1]"));
    k.push_back(make_key("train", "dist_backend", &C::train, &T::dist_backend, "auto | gloo | nccl [auto]"));
    k.push_back(make_key("train", "dist_timeout_s", &C::train, &T::dist_timeout_s,
                         "seconds a rendezvous or collective may wait for the other processes [300]"));
    return k;
  }();
  return keys;
}

const Key* find_key(const std::string& section, const std::string& name) {
  for (const auto& k : schema())
    if (k.section == section && k.name == name) return &k;
  return nullptr;
}

std::string valid_keys(const std::string& section) {
  std::string s;
  for (const auto& k : schema())
    if (k.section == section) s += (s.empty() ? "" : ", ") + k.name;
  return s;
}

bool is_section(const std::string& s) { return s == "model" || s == "data" || s == "train"; }

void validate(const Config& c) {
  const auto& t = c.train;
  auto need = [](bool ok, const std::string& key, const std::string& why) {
    if (!ok) throw Error(key, why);
  };
  need(!c.model.model_path.empty(), "model.model_path", "is required");
  need(!c.data.train_path.empty(), "data.train_path", "is required (a JSONL file or a list of them)");
  need(!t.output_dir.empty(), "train.output_dir", "is required");
  need(c.data.max_seq_len > 0, "data.max_seq_len", "must be positive");
  for (const auto& [key, p] : {std::pair{"data.text_cond_dropout_prob", c.data.text_cond_dropout_prob},
                                std::pair{"data.vit_cond_dropout_prob", c.data.vit_cond_dropout_prob},
                                std::pair{"data.vae_cond_dropout_prob", c.data.vae_cond_dropout_prob},
                                std::pair{"data.cfg_txt_uncond_drop_prob", c.data.cfg_txt_uncond_drop_prob},
                                std::pair{"data.cfg_img_uncond_drop_prob", c.data.cfg_img_uncond_drop_prob},
                                std::pair{"data.cfg_txtimg_uncond_drop_prob", c.data.cfg_txtimg_uncond_drop_prob}})
    need(p >= 0 && p <= 1, key, "must be in [0, 1]");
  need(c.data.cfg_txt_uncond_drop_prob + c.data.cfg_img_uncond_drop_prob + c.data.cfg_txtimg_uncond_drop_prob <= 1,
       "data.cfg_txt_uncond_drop_prob", "with cfg_img_ and cfg_txtimg_uncond_drop_prob must sum to at most 1");
  need(t.micro_batch_size >= 1, "train.micro_batch_size", "must be at least 1");
  need(t.global_batch_size >= 0, "train.global_batch_size", "must not be negative");
  const int64_t global = t.global_batch_size > 0 ? t.global_batch_size : t.micro_batch_size;
  need(global % t.micro_batch_size == 0 || t.dyn_bsz, "train.global_batch_size",
       "must be a multiple of train.micro_batch_size (" + std::to_string(t.micro_batch_size) + ")");
  need(t.max_steps >= 0, "train.max_steps", "must not be negative");
  need(t.num_train_epochs > 0 || t.max_steps > 0, "train.num_train_epochs", "must be positive when max_steps is 0");
  need(t.lr >= 0, "train.lr", "must not be negative");
  need(t.lr_min >= 0 && t.lr_min <= t.lr, "train.lr_min", "must be in [0, train.lr]");
  need(t.lr_scheduler == "constant" || t.lr_scheduler == "cosine" || t.lr_scheduler == "linear", "train.lr_scheduler",
       "must be constant, cosine or linear, got '" + t.lr_scheduler + "'");
  need(t.warmup_steps >= 0, "train.warmup_steps", "must not be negative");
  need(t.weight_decay >= 0, "train.weight_decay", "must not be negative");
  need(t.betas.size() == 2 && t.betas[0] >= 0 && t.betas[0] < 1 && t.betas[1] >= 0 && t.betas[1] < 1, "train.betas",
       "must be two numbers in [0, 1)");
  need(t.eps > 0, "train.eps", "must be positive");
  need(t.ce_weight >= 0, "train.ce_weight", "must not be negative");
  need(t.mse_weight >= 0, "train.mse_weight", "must not be negative");
  need(t.ce_weight > 0 || t.mse_weight > 0, "train.ce_weight", "and train.mse_weight are both 0: nothing to train");
  need(t.save_steps >= 0, "train.save_steps", "must not be negative");
  need(t.save_total_limit >= 0, "train.save_total_limit", "must not be negative");
  need(t.log_steps >= 1, "train.log_steps", "must be at least 1");
  need(t.threads >= 0, "train.threads", "must not be negative");
  need(t.data_parallel_mode == "ddp" || t.data_parallel_mode == "fsdp", "train.data_parallel_mode", "must be ddp or fsdp");
  need(t.dist_backend == "auto" || t.dist_backend == "gloo" || t.dist_backend == "nccl", "train.dist_backend",
       "must be auto, gloo or nccl");
  need(t.dist_timeout_s > 0, "train.dist_timeout_s", "must be positive");
  need(t.ddp_bucket_mb > 0, "train.ddp_bucket_mb", "must be positive");
  need(t.ulysses_size >= 1, "train.ulysses_size", "must be at least 1");
  need(t.dtype.empty() || t.dtype == "fp32" || t.dtype == "float32" || t.dtype == "bf16" || t.dtype == "bfloat16",
       "train.dtype", "must be fp32 or bf16, got '" + t.dtype + "'");
  need(t.master_dtype == "fp32" || t.master_dtype == "same", "train.master_dtype",
       "must be fp32 or same, got '" + t.master_dtype + "'");
}

}  // namespace

std::vector<std::pair<std::string, std::string>> config_keys() {
  std::vector<std::pair<std::string, std::string>> out;
  for (const auto& k : schema()) out.emplace_back(k.dotted(), k.help);
  return out;
}

Config load_config(const std::string& path, const std::vector<std::pair<std::string, std::string>>& overrides) {
  YAML::Node root;
  {  // a folder, device or pipe read forever (a FIFO, /dev/zero) or failed with the stream's words
    std::error_code ec;
    const auto st = std::filesystem::status(path, ec);
    if (!ec && std::filesystem::exists(st) && !std::filesystem::is_regular_file(st))
      throw Error(path, "not a regular file (a folder, device or pipe); expected the YAML config");
  }
  try {
    root = YAML::LoadFile(path);
  } catch (const YAML::BadFile&) {
    throw Error(path, "cannot read the config file");
  } catch (const YAML::Exception& e) {
    throw Error(path, "not valid YAML: " + e.msg + " (line " + std::to_string(e.mark.line + 1) + ")");
  }
  Config c;
  c.source = path;
  if (!root.IsNull() && !root.IsMap()) throw Error(path, "expected a mapping with the sections model, data and train");
  if (root.IsMap()) {
    // yaml-cpp keeps both entries of a key written twice; the second would silently win
    auto line_of = [](const YAML::Node& n) { return std::to_string(n.Mark().line + 1); };
    std::set<std::string> sections_seen, keys_seen;
    for (const auto& sec : root) {
      const std::string sname = sec.first.Scalar();
      if (!is_section(sname)) throw Error(path, "unknown section '" + sname + "' (sections: model, data, train)");
      if (!sections_seen.insert(sname).second)
        throw Error(path + ": " + sname, "section written twice (again on line " + line_of(sec.first) + ")");
      if (sec.second.IsNull()) continue;
      if (!sec.second.IsMap()) throw Error(path + ": " + sname, "expected a mapping of keys");
      for (const auto& kv : sec.second) {
        const std::string kname = kv.first.Scalar();
        const Key* key = find_key(sname, kname);
        if (!key) throw Error(path + ": " + sname + "." + kname, "unknown key (valid " + sname + " keys: " + valid_keys(sname) + ")");
        if (!keys_seen.insert(key->dotted()).second)
          throw Error(path + ": " + key->dotted(), "set twice (again on line " + line_of(kv.first) + ")");
        key->read(c, kv.second, path + ": " + key->dotted());
        c.explicitly_set.insert(key->dotted());
      }
    }
  }
  for (const auto& [dotted, text] : overrides) {
    const auto dot = dotted.find('.');
    const std::string sname = dot == std::string::npos ? dotted : dotted.substr(0, dot);
    if (!is_section(sname) || dot == std::string::npos)
      throw Error("--" + dotted, "not a config key (use --model.KEY, --data.KEY or --train.KEY)");
    const std::string kname = dotted.substr(dot + 1);
    const Key* key = find_key(sname, kname);
    if (!key) throw Error("--" + dotted, "unknown key (valid " + sname + " keys: " + valid_keys(sname) + ")");
    YAML::Node value;
    try {
      value = YAML::Load(text);  // "1e-4", "true", "[0.9, 0.95]", "a.jsonl"
    } catch (const YAML::Exception&) {
      value = YAML::Node(text);
    }
    if (value.IsMap()) value = YAML::Node(text);  // "a: b" as a plain string
    key->read(c, value, "--" + dotted);
    c.explicitly_set.insert(key->dotted());
  }
  if (const char* d = std::getenv("DEBUG"); d && std::string(d) == "1") {
    c.debug = true;
    c.train.max_steps = 3;
  }
  try {
    validate(c);
  } catch (const Error& e) {
    throw e.with_context(path);
  }
  return c;
}

std::string Config::to_yaml() const {
  YAML::Emitter out;
  out << YAML::BeginMap;
  for (const char* sec : {"model", "data", "train"}) {
    out << YAML::Key << sec << YAML::Value << YAML::BeginMap;
    for (const auto& k : schema()) {
      if (k.section != sec) continue;
      const YAML::Node v = k.write(*this);
      out << YAML::Key << k.name << YAML::Value;
      if (v.IsSequence()) {
        out << YAML::Flow << v;
      } else {
        out << v;
      }
    }
    out << YAML::EndMap;
  }
  out << YAML::EndMap;
  return std::string(out.c_str()) + "\n";
}

}  // namespace omni::train
