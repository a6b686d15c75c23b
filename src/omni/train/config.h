// The training configuration: a YAML file with the sections `model`, `data` and `train` (VeOmni's
// layout and key names), every key overridable on the command line as `--section.key value`.
// Keys are declared once in a schema (config.cpp) with their type, default and help; an unknown
// key is an error listing its section's valid keys; values are type-checked. torch-free.
#pragma once
#include <cstdint>
#include <set>
#include <string>
#include <utility>
#include <vector>

namespace omni::train {

struct ModelConfig {
  std::string model_path;  // a checkpoint directory in its family's shipped layout
};

struct DataConfig {
  std::vector<std::string> train_path;  // JSONL files (one string or a list in YAML)
  std::string image_root;               // image paths are relative to it ("" = each JSONL's folder)
  int64_t max_seq_len = 4096;           // a longer sample is a bad sample
  bool skip_bad_samples = false;        // skip (and count) bad samples instead of failing
  bool allow_absolute_paths = false;    // accept absolute image paths and ".." components
  // BAGEL's classifier-free-guidance dropout during training (official defaults; 0 turns off).
  double text_cond_dropout_prob = 0.1;
  double vit_cond_dropout_prob = 0.3;
  double vae_cond_dropout_prob = 0.3;
  // SenseNova-U1's CFG condition dropout (the fork's 8B SFT values; 0 turns it off): a sample's
  // prompt (txt), an edit's input images (img), or both (txtimg) are removed from the text.
  double cfg_txt_uncond_drop_prob = 0.1;
  double cfg_img_uncond_drop_prob = 0.0;
  double cfg_txtimg_uncond_drop_prob = 0.1;
};

// The fork's freezing keys (VeOmni unified trainer). Which parameters each covers is declared by
// the family (Trainable::freeze_keys); a key set to a non-default value that the family does not
// declare is an error.
struct FreezeConfig {
  bool freeze_vit = false;
  bool freeze_vae = true;  // the fork's default: the VAE / VQ tokenizer only provides targets
  bool freeze_und = false;
  bool freeze_llm = false;
  bool freeze_gen_modules = false;
  bool freeze_mlp = false;
  bool unfreeze_mot_gen = false;
  int64_t unfreeze_vit_layers = 0;  // Python slice start into the ViT's layers: -N = the last N
  bool unfreeze_lm_head = false;
};

struct TrainConfig {
  std::string output_dir;
  int64_t micro_batch_size = 1;   // samples per forward (or a token budget's worth with dyn_bsz)
  int64_t global_batch_size = 0;  // samples per optimizer step; 0 = micro_batch_size
  bool dyn_bsz = false;           // micro-batches filled up to max_seq_len * micro_batch_size tokens
  int64_t max_steps = 0;          // 0 = num_train_epochs over the data
  double num_train_epochs = 1;
  double lr = 1e-5;
  double lr_min = 0;               // the floor cosine / linear decay ends at
  std::string lr_scheduler = "constant";  // constant | cosine | linear
  int64_t warmup_steps = 0;
  double weight_decay = 0.0;
  std::vector<double> betas = {0.9, 0.999};
  double eps = 1e-8;
  double max_grad_norm = 1.0;  // <= 0: no clipping (the norm is still logged)
  int64_t seed = 42;
  double ce_weight = 1.0;
  double mse_weight = 1.0;
  FreezeConfig freeze;
  int64_t save_steps = 0;        // 0 = only at the end
  int64_t save_total_limit = 0;  // 0 = keep every checkpoint
  std::string load_path;         // "" = fresh start, "auto" = newest complete checkpoint, or a path
  bool save_hf_weights = false;
  int64_t log_steps = 1;
  std::string device = "cpu";
  std::string dtype;  // "" = fp32: the model's parameters (its compute dtype)
  // What AdamW steps: "fp32" = an fp32 master copy of each trainable parameter where the model's
  // dtype is lower (bf16 compute, fp32 updates), "same" = the parameters themselves.
  std::string master_dtype = "fp32";
  int64_t threads = 0;
  // Multi-process runs (omni launch / torchrun): "fsdp" (parameters, gradients and AdamW state
  // sharded 1/N) or "ddp" (replicated weights, summed gradients).
  std::string data_parallel_mode = "fsdp";
  double ddp_bucket_mb = 25;          // ddp: gradients all-reduced in buckets of this size during the backward
  // Ulysses sequence parallelism: groups of this many consecutive processes train on the same
  // sequences, each holding 1/K of every sequence's rows through the decoder (world = dp x K).
  int64_t ulysses_size = 1;
  std::string dist_backend = "auto";  // gloo on the CPU, nccl on CUDA
  double dist_timeout_s = 300;        // a collective or the rendezvous waiting longer fails the run
};

struct Config {
  ModelConfig model;
  DataConfig data;
  TrainConfig train;
  std::set<std::string> explicitly_set;  // "train.freeze_vit", ... as given in the file or flags
  std::string source;                    // the YAML file (for messages)
  bool debug = false;                    // DEBUG=1: 3 steps, verbose

  bool was_set(const std::string& dotted) const { return explicitly_set.count(dotted) != 0; }
  // The resolved configuration as YAML (every key, defaults included).
  std::string to_yaml() const;
};

// Reads `path`, applies `overrides` ("section.key" -> value text, parsed as YAML scalars or
// flow sequences), checks types and ranges, applies DEBUG=1 from the environment. Throws
// omni::Error naming the file or the flag and the key.
Config load_config(const std::string& path, const std::vector<std::pair<std::string, std::string>>& overrides = {});

// Every key as "section.key", in schema order, with its help text (for `omni train --help`).
std::vector<std::pair<std::string, std::string>> config_keys();

}  // namespace omni::train
