// omni eval: multiple-choice visual questions answered by any family that understands images
// (src/omni/eval/). Everything the user gave is checked before the slow load.
#include <torch/torch.h>

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <memory>
#include <optional>

#include "commands.h"
#include "omni/core/error.h"
#include "omni/core/log.h"
#include "omni/core/progress.h"
#include "omni/eval/drawing_torch.h"
#include "omni/eval/evaluate_torch.h"
#include "omni/io/output_file.h"
#include "omni/models/registry.h"

namespace omni::cli {
namespace {

double finite(const std::string& flag, double v) {  // a NaN scale drew NaN pictures
  if (!std::isfinite(v)) throw CLI::ValidationError(flag, "expected a finite number");
  return v;
}

struct EvalArgs {
  std::string model_path, model_type, data, image_root, output, score = "generate", task = "mc";
  std::optional<int> steps;
  std::optional<double> cfg_text_scale, cfg_img_scale;
  uint64_t seed = 0;
  std::string device = "cpu", dtype;
  int threads = 0, max_new_tokens = 32;
  int64_t limit = 0;
  bool allow_absolute = false;
};

}  // namespace

void add_eval_command(CLI::App& app, Runner& run) {
  auto* cmd = app.add_subcommand("eval", "score a model on multiple-choice visual questions (JSONL)");
  auto a = std::make_shared<EvalArgs>();
  cmd->add_option("--model_path", a->model_path, "model directory (config + weights)")->required();
  cmd->add_option("--model_type", a->model_type, "model family; detected from the directory when omitted");
  cmd->add_option("--data", a->data,
                  "mc: questions, one JSON object per line: {\"id\", \"image\"|\"images\", \"question\", \"options\", "
                  "\"answer\"}; shapes: an omni shapes JSONL (its text-to-image and edit samples)")
      ->required();
  cmd->add_option("--task", a->task, "mc (multiple-choice questions) | shapes (draw and edit omni shapes scenes)")
      ->default_str("mc");
  cmd->add_option_function<int>("--steps", [a](const int& v) { a->steps = v; }, "shapes: flow steps (default: the family's)");
  cmd->add_option("--seed", a->seed, "shapes: the generator's seed")->default_str("0");
  cmd->add_option_function<double>(
      "--cfg_text_scale", [a](const double& v) { a->cfg_text_scale = finite("--cfg_text_scale", v); },
      "shapes: text CFG scale (default: the family's)");
  cmd->add_option_function<double>(
      "--cfg_img_scale", [a](const double& v) { a->cfg_img_scale = finite("--cfg_img_scale", v); },
      "shapes: image CFG scale of the edits (default: the family's)");
  cmd->add_option("--image_root", a->image_root, "folder the image paths are relative to (default: the data file's)");
  cmd->add_option("--output", a->output, "write per-question predictions to this JSONL file");
  cmd->add_option("--score", a->score, "generate (read the choice from the greedy answer) | loglik (the most likely option)")
      ->default_str("generate");
  cmd->add_option("--max_new_tokens", a->max_new_tokens, "answer length cap for --score generate")->default_str("32");
  cmd->add_option("--limit", a->limit, "the first N questions only (0 = all)");
  cmd->add_flag("--allow_absolute_paths", a->allow_absolute, "accept absolute image paths and '..' in the data file");
  cmd->add_option("--device", a->device, "cpu | cuda | cuda:N")->default_str("cpu");
  cmd->add_option("--dtype", a->dtype, "fp32 | bf16 | fp16 | int8 (int8: decoder-layer linear weights, fp32 compute; default: fp32 on cpu, bf16 on cuda)");
  cmd->add_option("--threads", a->threads, "intra-op CPU threads (default: OMP_NUM_THREADS, else every CPU this process may use)");

  cmd->callback([&run, a] {
    run = [a]() -> int {
      namespace fs = std::filesystem;
      if (!fs::is_directory(a->model_path)) throw Error(a->model_path, "model directory not found");
      const auto& family = models::resolve_family(a->model_path, a->model_type);
      if (std::find(family.modes.begin(), family.modes.end(), "understand") == family.modes.end())
        throw Error("omni eval", family.name + " does not understand images");
      if (a->task != "mc" && a->task != "shapes") throw Error("--task", "must be mc or shapes, got '" + a->task + "'");
      if (a->score != "generate" && a->score != "loglik")
        throw Error("--score", "must be generate or loglik, got '" + a->score + "'");
      if (a->steps && *a->steps < 2) throw Error("--steps", "must be at least 2");
      if (a->cfg_text_scale && *a->cfg_text_scale < 0) throw Error("--cfg_text_scale", "must be >= 0");
      if (a->cfg_img_scale && *a->cfg_img_scale < 0) throw Error("--cfg_img_scale", "must be >= 0");
      if (a->max_new_tokens < 1) throw Error("--max_new_tokens", "must be at least 1");
      if (a->limit < 0) throw Error("--limit", "must not be negative");
      if (a->threads < 0) throw Error("--threads", "must be 1 or more");
      if (!a->image_root.empty() && !fs::is_directory(a->image_root))
        throw Error("--image_root", a->image_root + ": no such folder");
      auto has_mode = [&](const char* m) { return std::find(family.modes.begin(), family.modes.end(), m) != family.modes.end(); };
      std::vector<eval::McItem> items;
      eval::DrawingOptions d;
      std::vector<eval::DrawTask> drawings;
      if (a->task == "mc") {
        items = eval::read_multiple_choice(a->data, a->image_root, a->allow_absolute);
        if (a->limit > 0 && static_cast<int64_t>(items.size()) > a->limit) items.resize(static_cast<size_t>(a->limit));
      } else {
        d.image_root = a->image_root;
        d.allow_absolute = a->allow_absolute;
        d.limit = a->limit;
        d.steps = a->steps;
        d.cfg_text_scale = a->cfg_text_scale;
        d.cfg_img_scale = a->cfg_img_scale;
        d.seed = a->seed;
        d.predictions = a->output;
        d.generate = has_mode("generate");
        d.edit = has_mode("edit");
        if (!d.generate) throw Error("--task shapes", family.name + " does not draw pictures");
        drawings = eval::read_drawing_tasks(a->data, family.read_image, d);
      }
      // The predictions may not replace the question file, an image or the weights.
      if (!a->output.empty()) {
        std::vector<std::string> inputs = {a->data, a->model_path};
        if (!a->image_root.empty()) inputs.push_back(a->image_root);
        for (const auto& item : items) inputs.insert(inputs.end(), item.images.begin(), item.images.end());
        io::check_output_path("--output", a->output, inputs);
      }

      models::LoadOptions lo;
      lo.path = a->model_path;
      lo.inference_only = true;
      lo.device = models::parse_device(a->device);
      if (!a->dtype.empty()) lo.dtype = models::parse_dtype(a->dtype);
      models::check_dtype_on_device(lo.resolved_dtype(), lo.device);
      lo.threads = a->threads;
      lo.threads = models::set_threads(lo.threads);
      auto model = family.load(lo);
      if (a->task == "shapes") {
        Progress bar("eval", static_cast<int64_t>(drawings.size()), "picture");
        const auto r = eval::evaluate_drawing(*model, drawings, family.read_image, d, [&](const eval::DrawingResult&) { bar.tick(); });
        bar.finish();
        auto pct = [](int64_t k, int64_t n) { return n ? 100.0 * static_cast<double>(k) / static_cast<double>(n) : 0.0; };
        if (r.generated == 0)
          std::printf("generation: not checked (no text-to-image samples in the data)\n");
        else
          std::printf("generation: %.2f%% (%lld of %lld pictures show their caption) [%s]\n", pct(r.generated_right, r.generated),
                      static_cast<long long>(r.generated_right), static_cast<long long>(r.generated), family.name.c_str());
        if (!d.edit)
          std::printf("edit: not checked (%s does not edit)\n", family.name.c_str());
        else if (r.edited == 0)
          std::printf("edit: not checked (no edit samples in the data)\n");
        else
          std::printf("edit: %.2f%% (%lld of %lld edits show the asked change) [%s]\n", pct(r.edited_right, r.edited),
                      static_cast<long long>(r.edited_right), static_cast<long long>(r.edited), family.name.c_str());
        if (!a->output.empty()) std::printf("predictions: %s\n", a->output.c_str());
        return 0;
      }
      log_info(family.name, " on ", lo.device.str(), " in ", models::precision_name(lo, model->dtype()), ": ", items.size(),
               " questions from ", a->data);

      eval::EvalOptions o;
      o.score = a->score;
      o.max_new_tokens = a->max_new_tokens;
      o.predictions = a->output;
      Progress bar("eval", static_cast<int64_t>(items.size()), "question");
      const auto r = eval::evaluate_multiple_choice(*model, items, family.read_image, o, [&](const eval::EvalResult& s) {
        char note[64];
        std::snprintf(note, sizeof note, "accuracy %.1f%%", 100.0 * s.accuracy());
        bar.set_note(note);
        bar.tick();
      });
      bar.finish();
      std::printf("accuracy: %.2f%% (%lld of %lld; %lld without a readable choice) [%s, %s]\n", 100.0 * r.accuracy(),
                  static_cast<long long>(r.correct), static_cast<long long>(r.total),
                  static_cast<long long>(r.unanswered), family.name.c_str(), a->score.c_str());
      if (!a->output.empty()) std::printf("predictions: %s\n", a->output.c_str());
      return 0;
    };
  });
}

}  // namespace omni::cli
