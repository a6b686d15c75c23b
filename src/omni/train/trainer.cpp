#include "omni/train/trainer.h"

#include <torch/torch.h>

#include <chrono>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <limits>
#include <optional>

#include "omni/core/error.h"
#include "omni/core/log.h"
#include "omni/core/progress.h"
#include "omni/dist/fsdp.h"
#include "omni/dist/grad_buckets.h"
#include "omni/dist/process_group.h"
#include "omni/generate/random.h"
#include "omni/io/module_loader_torch.h"
#include "omni/models/registry.h"
#include "omni/nn/sequence_parallel.h"
#include "omni/train/batching.h"
#include "omni/train/checkpoint.h"
#include "omni/train/dataset.h"
#include "omni/train/freeze.h"
#include "omni/train/loss_plot.h"
#include "omni/train/metrics.h"
#include "omni/train/schedule.h"

namespace omni::train {
namespace fs = std::filesystem;

namespace {

double seconds_since(std::chrono::steady_clock::time_point t) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t).count();
}

void write_file(const fs::path& p, const std::string& text) {
  std::ofstream f(p, std::ios::trunc);
  f << text;
  if (!f) throw Error(p.string(), "cannot write");
}

// The configs, tokenizer and card of the source model folder (not its weights: the family writes
// those), so the exported folder is the family's shipped layout.
void copy_model_assets(const std::string& from, const std::string& to) {
  for (const auto& e : fs::directory_iterator(from)) {
    if (!e.is_regular_file()) continue;
    const std::string name = e.path().filename().string();
    const std::string ext = e.path().extension().string();
    const bool index = name.size() > 11 && name.compare(name.size() - 11, 11, ".index.json") == 0;
    const bool asset = (ext == ".json" && !index) || ext == ".txt" || ext == ".model" || ext == ".jinja" ||
                       ext == ".tiktoken" || name == "README.md";
    if (asset) fs::copy_file(e.path(), fs::path(to) / name, fs::copy_options::overwrite_existing);
  }
}

// The generator of one micro-batch: from the run's seed, the step and the micro-batch's place in
// it, so its draws do not depend on which process runs it (N processes draw what one would).
uint64_t micro_batch_seed(uint64_t seed, int64_t step, size_t micro_batch) {
  uint64_t z = seed ^ (0x9E3779B97F4A7C15ull * static_cast<uint64_t>(step + 1)) ^ (0xC2B2AE3D27D4EB4Full * (micro_batch + 1));
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;  // splitmix64's finaliser
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

// torch's clip_grad_norm_ (the 2-norm of all gradients; scaled by max / (norm + 1e-6) when that is
// below 1), summed in float64: libtorch 1.13's float32 norm of a large gradient is off by ~1e-5.
// `shards`: the gradients are this process's shards, their squares summed over the processes.
double clip_grad_norm(std::vector<at::Tensor>& params, double max_norm, dist::ProcessGroup* shards) {
  std::vector<at::Tensor> parts;  // one host transfer for all of them
  for (const auto& p : params)
    if (p.grad().defined()) parts.push_back(p.grad().detach().to(torch::kFloat64).pow(2).sum());
  std::vector<double> sq(params.size(), 0.0);
  if (!parts.empty()) {
    const auto sums = torch::stack(parts).cpu().contiguous();
    for (size_t i = 0, k = 0; i < params.size(); ++i)
      if (params[i].grad().defined()) sq[i] = sums.data_ptr<double>()[k++];
  }
  if (shards) sq = shards->all_reduce_sum(sq);
  double total_sq = 0;
  for (double v : sq) total_sq += v;
  const double total = std::sqrt(total_sq);
  const double coef = max_norm / (total + 1e-6);
  if (coef < 1) {
    torch::NoGradGuard ng;
    for (auto& p : params)
      if (p.grad().defined()) p.mutable_grad().mul_(coef);
  }
  return total;
}

// A validated sample: where it is and what it costs.
struct Planned {
  size_t sample;
  models::TrainPlan plan;
};

// One forward and backward of a step: samples [from, to) of this process's micro-batch `batch`.
struct Pass {
  size_t batch, from, to;
};

}  // namespace

TrainResult run_training(const Config& cfg) {
  if (cfg.debug) set_log_level(LogLevel::Debug);
  const auto& tc = cfg.train;
  // Under `omni launch` / torchrun: every process trains its part of each step; the first one
  // alone logs and writes (metrics, checkpoints, exports).
  const auto world = dist::WorldEnv::from_env();
  const bool lead = world.rank == 0;
  if (!lead && log_level() < LogLevel::Warn) set_log_level(LogLevel::Warn);
  std::error_code ec;
  if (fs::exists(tc.output_dir, ec) && !fs::is_directory(tc.output_dir, ec))
    throw Error("train.output_dir", tc.output_dir + " exists and is not a folder");
  if (lead) {
    fs::create_directories(tc.output_dir, ec);
    if (ec) throw Error("train.output_dir", tc.output_dir + ": " + ec.message());
    write_file(fs::path(tc.output_dir) / "config.yaml", cfg.to_yaml());
  }

  // ---- data files first: a malformed line fails before the slow model load ---------------------
  DataReport report;
  const auto samples = read_jsonl(cfg.data, report);

  // ---- model -----------------------------------------------------------------------------------
  models::register_builtin_models();
  if (!fs::is_directory(cfg.model.model_path, ec))
    throw Error("model.model_path", cfg.model.model_path + ": no such folder");
  const models::Family& family = models::detect_family(cfg.model.model_path);
  models::LoadOptions lo;
  lo.path = cfg.model.model_path;
  lo.device = models::parse_device(tc.device);
  // One GPU per process: a plain "cuda" under `omni launch` / torchrun is this process's,
  // cuda:LOCAL_RANK (what torchrun scripts set by hand).
  if (lo.device.is_cuda() && !lo.device.has_index() && world.distributed())
    lo.device = c10::Device(c10::kCUDA, static_cast<c10::DeviceIndex>(world.local_rank));
  lo.dtype = tc.dtype.empty() ? c10::ScalarType::Float : models::parse_dtype(tc.dtype);
  lo.threads = models::set_threads(static_cast<int>(tc.threads), world.local_world);
  log_info("loading ", family.name, " from ", lo.path, " on ", lo.device.str(), " in ", models::dtype_name(*lo.dtype));
  // fsdp on the CPU: the load checks every tensor but reads none; each trainable parameter is read
  // just before its shard is taken and dropped after it (dist/fsdp.h), the rest below, so a process
  // never holds the whole model (io::DeferWeights).
  const bool sharded_load = world.distributed() && tc.data_parallel_mode == "fsdp" && lo.device.is_cpu();
  io::DeferredWeights deferred;
  std::unique_ptr<models::Model> model;
  {
    std::optional<io::DeferWeights> defer;
    if (sharded_load) defer.emplace(deferred);
    model = family.load(lo);
  }
  std::unique_ptr<dist::ProcessGroup> group;
  if (world.distributed()) {
    group = dist::ProcessGroup::init(world, model->device(), tc.dist_backend,
                                     std::chrono::milliseconds(static_cast<int64_t>(tc.dist_timeout_s * 1000)));
    log_info("distributed: ", world.world, " processes (", tc.data_parallel_mode, ", ", tc.dist_backend, ")");
  }
  models::Trainable* trainable = models::as_trainable(*model);
  if (!trainable) throw Error("model.model_path", family.name + " cannot be trained yet");
  // Ulysses: groups of ulysses_size consecutive processes share each sequence (their decoders
  // split its rows); the groups split the global batch between them as data parallel processes.
  const int sp_size = static_cast<int>(tc.ulysses_size);
  if (world.world % sp_size != 0)
    throw Error("train.ulysses_size", std::to_string(sp_size) + " does not divide the " + std::to_string(world.world) +
                                          " process" + (world.world == 1 ? "" : "es") + " of this run");
  const int dp_world = world.world / sp_size, dp_rank = world.rank / sp_size;
  std::unique_ptr<dist::ProcessGroup> sp_group;
  std::unique_ptr<nn::SequenceParallel> sp;
  if (sp_size > 1) {
    std::vector<int> members;
    for (int i = 0; i < sp_size; ++i) members.push_back(dp_rank * sp_size + i);
    sp_group = group->subgroup(members, "ulysses." + std::to_string(dp_rank));
    dist::ProcessGroup* g = sp_group.get();
    nn::SequenceParallel::Collectives c;
    c.rank = g->rank();
    c.size = g->size();
    c.all_to_all = [g](const at::Tensor& x) { return g->all_to_all(x); };
    c.all_gather = [g](const at::Tensor& x) {
      auto sizes = x.sizes().vec();
      sizes.insert(sizes.begin(), g->size());
      return g->all_gather(x).view(sizes);
    };
    sp = std::make_unique<nn::SequenceParallel>(std::move(c));
    if (!trainable->set_sequence_parallel(sp.get()))
      throw Error("train.ulysses_size", family.name + " cannot train with sequence parallelism yet");
    log_info("sequence parallel: ", dp_world, " data-parallel group", dp_world == 1 ? "" : "s", " of ", sp_size,
             " processes (Ulysses)");
  }

  trainable->set_train_options({{"text_cond_dropout_prob", cfg.data.text_cond_dropout_prob},
                                {"vit_cond_dropout_prob", cfg.data.vit_cond_dropout_prob},
                                {"vae_cond_dropout_prob", cfg.data.vae_cond_dropout_prob},
                                {"cfg_txt_uncond_drop_prob", cfg.data.cfg_txt_uncond_drop_prob},
                                {"cfg_img_uncond_drop_prob", cfg.data.cfg_img_uncond_drop_prob},
                                {"cfg_txtimg_uncond_drop_prob", cfg.data.cfg_txtimg_uncond_drop_prob},
                                {"freeze_und", cfg.train.freeze.freeze_und ? 1.0 : 0.0}});
  const auto counts = apply_freezing(*trainable, cfg, family.name);
  int64_t n_train = 0, n_frozen = 0;
  for (const auto& c : counts) {
    log_info("  ", c.group, ": ", c.trainable, " trainable, ", c.frozen, " frozen");
    n_train += c.trainable;
    n_frozen += c.frozen;
  }
  log_info("parameters: ", n_train, " trainable, ", n_frozen, " frozen");
  std::vector<std::pair<std::string, at::Tensor>> params;
  std::vector<at::Tensor> param_tensors;
  for (auto& g : trainable->parameter_groups())
    for (auto& [name, p] : g.parameters)
      if (p.requires_grad()) {
        params.emplace_back(name, p);
        param_tensors.push_back(p);
      }
  if (params.empty()) throw Error("train", "every parameter is frozen: nothing to train");
  // What the optimizer steps (param_tensors from here on). fsdp: the trainable parameters split
  // 1/N over the processes (dist/fsdp.h), the shards. ddp and a single process: whole parameters.
  // Either way in the master dtype: with master_dtype fp32 a bf16 model computes in bf16 while
  // AdamW steps fp32 copies (the model's parameters are refreshed from them after each step).
  const auto model_params = param_tensors;
  const c10::ScalarType master = tc.master_dtype == "fp32" ? c10::ScalarType::Float : model->dtype();
  std::unique_ptr<dist::ShardedParameters> sharded;
  bool has_masters = false;
  if (group && tc.data_parallel_mode == "fsdp") {
    const auto units = trainable->layer_units();
    if (units.empty()) throw Error("train.data_parallel_mode", family.name + " cannot shard its parameters yet; use ddp");
    sharded = std::make_unique<dist::ShardedParameters>(*group, params, units, master,
                                                        [&](const at::Tensor& t) { deferred.load(t); });
    log_debug("fsdp: ", params.size(), " parameters sharded", sharded_load ? " as they were read" : "");
    trainable->set_layer_runner(sharded.get());
    param_tensors = sharded->local_shards();
  } else {
    for (auto& t : param_tensors)
      if (t.scalar_type() != master) {
        t = t.detach().to(master).clone().requires_grad_(true);
        has_masters = true;
      }
  }
  deferred.load_all();  // what the shards did not read: the frozen parameters and the buffers
  if (has_masters || (sharded && master != model->dtype()))
    log_info("master weights: AdamW steps ", models::dtype_name(master), " copies of the ",
             models::dtype_name(model->dtype()), " parameters");
  // ddp: the gradient sum starts bucket by bucket during the step's last backward (with master
  // weights it runs after the backward, on the masters' gradients).
  std::unique_ptr<dist::GradBuckets> buckets;
  if (group && !sharded && !has_masters)
    buckets = std::make_unique<dist::GradBuckets>(*group, param_tensors, static_cast<int64_t>(tc.ddp_bucket_mb * (1 << 20)));
  // The model's parameters from the master copies (after a step or a resume).
  auto refresh_model = [&] {
    if (!has_masters) return;
    torch::NoGradGuard ng;
    for (size_t i = 0; i < param_tensors.size(); ++i)
      if (!param_tensors[i].is_same(model_params[i])) model_params[i].copy_(param_tensors[i]);
  };

  // ---- data: decode and plan every sample once, so a bad one fails before step 1 -------------
  std::vector<Planned> planned;
  {
    Progress bar("checking data", static_cast<int64_t>(samples.size()), "sample");
    for (size_t i = 0; i < samples.size(); ++i) {
      try {
        const auto ex = to_example(samples[i], family.read_image);
        models::TrainPlan p;
        try {
          p = trainable->plan(ex);
        } catch (const Error& e) {
          throw Error(samples[i].where, e.what());
        }
        if (p.seq_len > cfg.data.max_seq_len)
          throw Error(samples[i].where, std::to_string(p.seq_len) + " tokens, longer than data.max_seq_len " +
                                            std::to_string(cfg.data.max_seq_len));
        if ((p.ce_tokens == 0 || tc.ce_weight == 0) && (p.gen_tokens == 0 || tc.mse_weight == 0))
          throw Error(samples[i].where, "nothing to learn from (no loss token under the configured weights)");
        log_debug(samples[i].where, ": ", p.seq_len, " tokens, ", p.ce_tokens, " CE + ", p.gen_tokens, " generation targets");
        planned.push_back({i, p});
      } catch (const Error& e) {
        if (!cfg.data.skip_bad_samples) throw;
        ++report.skipped;
        log_warn("skipping bad sample: ", e.what());
      }
      bar.tick();
    }
  }
  if (planned.empty()) throw Error("data.train_path", "no usable training sample");
  log_info("data: ", planned.size(), " samples from ", report.lines, " lines; ", report.skipped, " bad skipped");
  std::vector<int64_t> lengths;
  for (const auto& p : planned) lengths.push_back(p.plan.seq_len);
  BatchPlanner planner(cfg, lengths);
  const int64_t total =
      tc.max_steps > 0 ? tc.max_steps
                       : std::max<int64_t>(1, static_cast<int64_t>(std::ceil(tc.num_train_epochs * planner.steps_per_epoch())));

  // ---- optimizer, generator, resume ------------------------------------------------------------
  torch::optim::AdamW opt(param_tensors, torch::optim::AdamWOptions(tc.lr)
                                             .betas({tc.betas[0], tc.betas[1]})
                                             .eps(tc.eps)
                                             .weight_decay(tc.weight_decay));
  // The draws come from each micro-batch's generator, derived from the seed, the step and its place
  // in the step (micro_batch_seed): a resumed run or another process count draws the same.
  CheckpointContents ck;
  for (size_t i = 0; i < params.size(); ++i)
    ck.parameters.push_back({params[i].first, sharded ? sharded->params()[i].shape : params[i].second.sizes().vec(),
                             param_tensors[i]});
  ck.optimizer = &opt;
  if (sharded) ck.sharding = {world.rank, world.world, true, [&] { group->barrier(); }};
  ck.config_yaml = cfg.to_yaml();
  if (lead) prune_checkpoints(tc.output_dir, 0);  // stale .tmp folders of an interrupted save
  TrainerState state;
  double result_last_loss = 0;
  if (!tc.load_path.empty()) {
    std::optional<std::string> from =
        tc.load_path == "auto" ? latest_checkpoint(tc.output_dir) : std::optional<std::string>(tc.load_path);
    if (from) {
      state = load_checkpoint(*from, ck);
      refresh_model();
      planner.seek(state.data);
      log_info("resumed from ", *from, " at step ", state.global_step);
    } else {
      log_info("train.load_path auto: no complete checkpoint in ", tc.output_dir, "/checkpoints; starting fresh");
    }
  }
  state.skipped_samples = report.skipped;
  std::optional<MetricsLog> metrics;
  if (lead) metrics.emplace(tc.output_dir, state.global_step);
  if (metrics && !metrics->history().empty()) result_last_loss = metrics->history().back().loss;
  if (state.global_step >= total) log_info("already at step ", state.global_step, " of ", total, ": nothing to train");
  log_info("training ", total, " steps (", planner.steps_per_epoch(), " per epoch) on ", planned.size(), " samples");

  auto save = [&]() -> std::string {
    if (!lead && !sharded) return {};  // ddp: the first process holds everything
    ck.state = state;
    const std::string dir = save_checkpoint(tc.output_dir, ck, [&](const std::string& tmp) {
      if (!tc.save_hf_weights || !lead) return;
      const std::string hf = tmp + "/hf_ckpt";
      fs::create_directories(hf);
      copy_model_assets(cfg.model.model_path, hf);
      // fsdp: the shard files just written, reassembled one parameter at a time (nothing gathered)
      trainable->save_weights(hf, sharded ? saved_parameters(tmp, ck) : models::Trainable::WeightSource());
    });
    if (!lead) return {};
    prune_checkpoints(tc.output_dir, tc.save_total_limit);
    log_info("saved ", dir);
    return dir;
  };

  // ---- the loop --------------------------------------------------------------------------------
  TrainResult result;
  result.last_loss = result_last_loss;
  Progress bar("train", total - state.global_step, "step");
  // This process's trainable state in MiB: what the optimizer steps (whole parameters or shards),
  // their gradients and AdamW's two moments, in the parameters' dtype.
  double state_mib = 0;
  for (const auto& t : param_tensors) state_mib += 4.0 * static_cast<double>(t.numel() * t.element_size()) / (1 << 20);
  if (has_masters)  // and the model's own parameters and their gradients
    for (const auto& t : model_params) state_mib += 2.0 * static_cast<double>(t.numel() * t.element_size()) / (1 << 20);
  double setup_rss_mib = static_cast<double>(peak_rss_bytes()) / (1 << 20);
  if (group) setup_rss_mib = group->all_reduce_max({setup_rss_mib})[0];
  while (state.global_step < total) {
    const auto t0 = std::chrono::steady_clock::now();
    auto comm_seconds = [&] {
      return (group ? group->seconds_in_collectives() : 0.0) + (sp_group ? sp_group->seconds_in_collectives() : 0.0);
    };
    const double comm0 = comm_seconds();
    const auto all_micro_batches = planner.next_step();
    // This process's micro-batches (round robin over the data-parallel groups) and their generators.
    std::vector<std::vector<int64_t>> micro_batches;
    std::vector<at::Generator> gens;
    for (size_t b = 0; b < all_micro_batches.size(); ++b)
      if (static_cast<int>(b % static_cast<size_t>(dp_world)) == dp_rank) {
        micro_batches.push_back(all_micro_batches[b]);
        gens.push_back(generate::make_generator(model->device(), micro_batch_seed(static_cast<uint64_t>(tc.seed),
                                                                                  state.global_step, b)));
      }
    // The step's samples, each possibly replaced by the family's random variant (CFG dropout, ...;
    // drawn from its micro-batch's generator before that micro-batch's forward, so a resumed run or
    // another process count draws the same) and re-planned.
    std::vector<std::vector<models::TrainExample>> step_examples;
    std::vector<std::vector<models::TrainPlan>> step_plans;
    for (const auto& mb : micro_batches) {
      auto& exs = step_examples.emplace_back();
      auto& plans = step_plans.emplace_back();
      for (int64_t i : mb) {
        const auto& pl = planned[static_cast<size_t>(i)];
        exs.push_back(to_example(samples[pl.sample], family.read_image));
        plans.push_back(pl.plan);
        if (auto variant = trainable->draw_sample_variant(exs.back(), gens[step_examples.size() - 1])) {
          try {
            plans.back() = trainable->plan(*variant);
          } catch (const Error& e) {
            throw Error(samples[pl.sample].where, std::string("its drawn variant: ") + e.what());
          }
          exs.back() = std::move(*variant);
        }
      }
    }
    int64_t n_ce = 0, n_gen = 0, tokens = 0;
    double norm_ce = 0, norm_gen = 0;  // the normalisers (token counts unless the family weighs tokens)
    for (const auto& plans : step_plans)
      for (const auto& p : plans) {
        n_ce += p.ce_tokens;
        n_gen += p.gen_tokens;
        norm_ce += p.ce_normaliser();
        norm_gen += p.gen_normaliser();
        tokens += p.seq_len;
      }
    if (group) {  // the whole global batch's counts, so every process scales by the same sums
      // (a sequence-parallel group's samples counted once, by its first process)
      const double share = sp && sp->rank() != 0 ? 0.0 : 1.0;
      const auto sums = group->all_reduce_sum({share * double(n_ce), share * double(n_gen), share * double(tokens),
                                               share * norm_ce, share * norm_gen});
      n_ce = static_cast<int64_t>(sums[0]);
      n_gen = static_cast<int64_t>(sums[1]);
      tokens = static_cast<int64_t>(sums[2]);
      norm_ce = sums[3];
      norm_gen = sums[4];
    }
    const double ce_scale = norm_ce > 0 ? tc.ce_weight / norm_ce : 0.0;
    const double gen_scale = norm_gen > 0 ? tc.mse_weight / norm_gen : 0.0;
    double ce_sum = 0, gen_sum = 0;
    double got_ce_sum = 0, got_gen_sum = 0;  // loss tokens computed (under sequence parallelism: owned)
    // The passes: one forward + backward per micro-batch (a family that packs runs it as one
    // sequence), each graph freed by its own backward so memory is one pass's. Sharded processes
    // run their layers' collectives in lockstep, so there a pass is one decoder forward: a sample,
    // unless the family packs the micro-batch; a process with fewer passes pads with null passes.
    std::vector<Pass> passes;
    for (size_t b = 0; b < micro_batches.size(); ++b) {
      const size_t n = micro_batches[b].size();
      if (sharded && !trainable->packs_micro_batches())
        for (size_t i = 0; i < n; ++i) passes.push_back({b, i, i + 1});
      else
        passes.push_back({b, 0, n});
    }
    size_t n_passes = passes.size();
    if (sharded) {
      n_passes = static_cast<size_t>(group->all_reduce_max({static_cast<double>(passes.size())})[0]);
      sharded->begin_step();
    }
    for (size_t k = 0; k < n_passes; ++k) {
      if (k >= passes.size()) {
        sharded->null_pass();
        continue;
      }
      const Pass& pass = passes[k];
      const auto& mb = micro_batches[pass.batch];
      int64_t want_ce = 0, want_gen = 0;
      std::vector<const models::TrainExample*> ptrs;
      for (size_t i = pass.from; i < pass.to; ++i) {
        want_ce += step_plans[pass.batch][i].ce_tokens;
        want_gen += step_plans[pass.batch][i].gen_tokens;
        ptrs.push_back(&step_examples[pass.batch][i]);
      }
      const std::string where = samples[planned[static_cast<size_t>(mb[pass.from])].sample].where;
      models::TrainLosses l = trainable->forward_train_batch(ptrs, gens[pass.batch]);
      const int64_t got_ce = l.ce.defined() ? l.ce.numel() : 0, got_gen = l.gen.defined() ? l.gen.numel() : 0;
      got_ce_sum += static_cast<double>(got_ce);
      got_gen_sum += static_cast<double>(got_gen);
      if (!sp && (got_ce != want_ce || got_gen != want_gen))
        throw Error(where, family.name + " planned " + std::to_string(want_ce) + "/" + std::to_string(want_gen) +
                               " loss tokens but computed " + std::to_string(got_ce) + "/" + std::to_string(got_gen) +
                               " (a family bug)");
      at::Tensor objective;
      auto add = [&](const at::Tensor& t) { objective = objective.defined() ? objective + t : t; };
      if (got_ce && tc.ce_weight > 0) add(l.ce.sum() * ce_scale);
      if (got_gen && tc.mse_weight > 0) add(l.gen.sum() * gen_scale);
      // every layer's backward runs (and so its collectives), whatever the loss reaches
      if (sharded)
        if (auto a = sharded->anchor(); a.defined()) add(a);
      if (sp)
        if (auto a = sp->anchor(); a.defined()) add(a);
      if (got_ce) ce_sum += l.ce.detach().sum().item<double>();
      if (got_gen) gen_sum += l.gen.detach().sum().item<double>();
      if (buckets && k + 1 == passes.size()) buckets->arm(objective);
      if (objective.defined() && objective.requires_grad()) objective.backward();
      if (sharded) sharded->end_pass();
    }
    if (sp) log_debug("step ", state.global_step + 1, ": ", sp->take_exchange_count(), " all-to-alls around attention");
    if (has_masters)  // the gradients move to the master copies (summed there, in their dtype)
      for (size_t i = 0; i < param_tensors.size(); ++i)
        if (!param_tensors[i].is_same(model_params[i])) {
          const auto& g = model_params[i].grad();
          param_tensors[i].mutable_grad() = g.defined() ? g.to(master) : at::Tensor();
          model_params[i].mutable_grad() = at::Tensor();
        }
    // The gradient of the global batch on every process. A parameter no process computed a
    // gradient for stays without one (AdamW then leaves it alone, as one process would).
    if (sharded) {  // the shards' gradients
      sharded->end_step();
    } else if (buckets) {  // ddp: the rest of the buckets, every sum written back
      buckets->finish();
    } else if (group) {  // ddp with master weights: the masters' gradients, after the backward
      std::vector<double> had;
      for (auto& p : param_tensors) had.push_back(p.grad().defined() ? 1.0 : 0.0);
      had = group->all_reduce_sum(had);
      std::vector<at::Tensor> grads;
      for (size_t i = 0; i < param_tensors.size(); ++i) {
        auto& p = param_tensors[i];
        if (had[i] == 0) continue;
        if (!p.grad().defined()) p.mutable_grad() = torch::zeros_like(p);
        grads.push_back(p.grad());
      }
      group->all_reduce_sum(grads);
    }
    if (group) {  // and the global batch's loss sums
      const auto sums = group->all_reduce_sum({ce_sum, gen_sum, got_ce_sum, got_gen_sum});
      ce_sum = sums[0];
      gen_sum = sums[1];
      if (sp && (sums[2] != static_cast<double>(n_ce) || sums[3] != static_cast<double>(n_gen)))
        throw Error("train", family.name + " planned " + std::to_string(n_ce) + "/" + std::to_string(n_gen) +
                                 " loss tokens in step " + std::to_string(state.global_step + 1) + " but its processes computed " +
                                 std::to_string(static_cast<int64_t>(sums[2])) + "/" +
                                 std::to_string(static_cast<int64_t>(sums[3])) +
                                 " (a family bug: each sequence-parallel process computes the losses it owns)");
    }
    const double lr = lr_at(tc, state.global_step, total);
    for (auto& g : opt.param_groups()) static_cast<torch::optim::AdamWOptions&>(g.options()).lr(lr);
    const double max_norm = tc.max_grad_norm > 0 ? tc.max_grad_norm : std::numeric_limits<double>::infinity();
    const double norm = clip_grad_norm(param_tensors, max_norm, sharded ? group.get() : nullptr);
    opt.step();
    for (auto& p : param_tensors) p.mutable_grad() = at::Tensor();  // set_to_none, as PyTorch 2 does
    refresh_model();
    ++state.global_step;
    state.data = planner.position();

    StepMetrics m;
    m.step = state.global_step;
    m.ce_loss = norm_ce > 0 ? ce_sum / norm_ce : 0.0;
    m.gen_loss = norm_gen > 0 ? gen_sum / norm_gen : 0.0;
    m.loss = tc.ce_weight * m.ce_loss + tc.mse_weight * m.gen_loss;
    m.lr = lr;
    m.grad_norm = norm;
    m.tokens = tokens;
    m.ce_tokens = n_ce;
    m.gen_tokens = n_gen;
    m.step_time_s = seconds_since(t0);
    m.tokens_per_s = m.step_time_s > 0 ? static_cast<double>(tokens) / m.step_time_s : 0.0;
    m.peak_rss_mib = static_cast<double>(peak_rss_bytes()) / (1 << 20);
    m.state_mib = state_mib;
    m.setup_rss_mib = setup_rss_mib;
    if (group) {
      m.comm_s = comm_seconds() - comm0;
      const auto most = group->all_reduce_max({m.peak_rss_mib, state_mib});
      m.peak_rss_mib = most[0];
      m.state_mib = most[1];
    }
    if (metrics) metrics->add(m);
    result.last_loss = m.loss;
    char note[160];
    std::snprintf(note, sizeof note, "loss %.4f (ce %.4f gen %.4f) lr %.3g %.0f tok/s", m.loss, m.ce_loss, m.gen_loss,
                  lr, m.tokens_per_s);
    bar.set_note(note);
    bar.tick();
    if (state.global_step % tc.log_steps == 0 || state.global_step == total)
      if (!bar.is_tty()) log_info("step ", state.global_step, "/", total, ": ", note, " grad_norm ", norm);
    if ((tc.save_steps > 0 && state.global_step % tc.save_steps == 0) || state.global_step == total) {
      result.last_checkpoint = save();
      if (group) group->barrier();  // a resumed run finds the checkpoint complete on every process
    }
  }
  bar.finish();
  result.steps = state.global_step;
  result.lead = lead;
  if (!lead) return result;
  write_loss_plot((fs::path(tc.output_dir) / "loss.png").string(), metrics->history());
  log_info("done: ", state.global_step, " steps; metrics in ", tc.output_dir, "/metrics.jsonl");
  return result;
}

}  // namespace omni::train
