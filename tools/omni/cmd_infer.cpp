// omni infer: understand / generate / edit with any registered family. The CLI only builds the
// request (model.h / request.h), checks which flags the chosen family and mode take — in one
// place — and writes what the model streams out.
#include <torch/torch.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <limits>
#include <memory>
#include <set>
#include <type_traits>

#include "commands.h"
#include "omni/core/error.h"
#include "omni/core/log.h"
#include "omni/generate/output_paths.h"
#include "omni/io/output_file.h"
#include "omni/io/trace_torch.h"
#include "omni/models/registry.h"

namespace omni::cli {
namespace {

// A flag's value, parsed whole: numbers must be finite (a NaN or infinite scale, temperature or
// shift went on to an all-NaN image with exit 0, or to libtorch's own message) and integers in
// range (strtoull took "-1" for 2^64 - 1 and clamped larger seeds).
template <typename T>
T parse_flag_value(const std::string& name, const std::string& s) {
  if constexpr (std::is_same_v<T, std::string>) {
    return s;
  } else {
    errno = 0;
    char* end = nullptr;
    T v{};
    if constexpr (std::is_floating_point_v<T>) {
      v = static_cast<T>(std::strtod(s.c_str(), &end));
      if (s.empty() || *end != '\0' || !std::isfinite(v) || errno == ERANGE)
        throw CLI::ValidationError(name + " " + s, "expected a finite number");
    } else if constexpr (std::is_unsigned_v<T>) {
      const unsigned long long u = std::strtoull(s.c_str(), &end, 10);
      if (s.empty() || s.find_first_not_of("0123456789") != std::string::npos || errno == ERANGE ||
          u > std::numeric_limits<T>::max())
        throw CLI::ValidationError(name + " " + s, "expected an integer in [0, " +
                                                        std::to_string(std::numeric_limits<T>::max()) + "]");
      v = static_cast<T>(u);
    } else {
      const long long i = std::strtoll(s.c_str(), &end, 10);
      if (s.empty() || *end != '\0' || errno == ERANGE || i < std::numeric_limits<T>::min() ||
          i > std::numeric_limits<T>::max())
        throw CLI::ValidationError(name + " " + s, "expected an integer");
      v = static_cast<T>(i);
    }
    return v;
  }
}

template <typename T>
CLI::Option* optional_flag(CLI::App* cmd, const std::string& name, std::optional<T>& target, const std::string& help) {
  return cmd->add_option_function<std::string>(
      name, [&target, name](const std::string& s) { target = parse_flag_value<T>(name, s); }, help);
}

struct InferArgs {
  std::string model_path, model_type, mode = "understand", prompt, output, trace;
  std::string device = "cpu", dtype;
  int threads = 0;
  std::vector<std::string> images;
  std::optional<uint64_t> seed;
  std::string cfg_interval;
  models::TextSampling text;
  models::ImageSampling image;
  std::map<std::string, std::string> extra;  // family flags as given
};

// Flags every family and mode takes (what to load and where, the input, the outputs).
const std::set<std::string> kCommonFlags = {"--model_path", "--model_type", "--mode",  "--prompt", "--image",
                                            "--output",     "--trace",      "--seed",  "--device", "--dtype",
                                            "--threads"};

// Streamed text to stdout; images to --output (numbered: out.png, out_1.png, ...), each path
// printed on its own line.
class CliSink final : public models::OutputSink {
 public:
  explicit CliSink(std::string output) : output_(std::move(output)) {}
  void text(const std::string& piece) override {
    std::fwrite(piece.data(), 1, piece.size(), stdout);
    std::fflush(stdout);
  }
  std::string image(const io::Image& img) override {
    const std::string path = generate::numbered_output(output_, count_++);
    io::write_image(path, img);  // PNG, or JPEG for .jpg / .jpeg
    std::printf("%s\n", path.c_str());
    std::fflush(stdout);
    return path;
  }

 private:
  std::string output_;
  int count_ = 0;
};

void check_flags(CLI::App* cmd, const models::Family& family, const std::string& mode) {
  const auto taken = family.flags ? family.flags(mode) : std::vector<std::string>{};
  for (const CLI::Option* opt : cmd->get_options()) {
    if (opt->count() == 0) continue;
    const std::string name = opt->get_name();
    if (name.rfind("--", 0) != 0 || kCommonFlags.count(name) || name == "--help") continue;
    if (std::find(taken.begin(), taken.end(), name) != taken.end()) continue;
    std::string list;
    for (const auto& f : taken) list += (list.empty() ? "" : " ") + f;
    throw Error(name, "not taken by " + family.name + " --mode " + mode + " (it takes: " +
                          (list.empty() ? "no sampling flags" : list) + ")");
  }
}

std::pair<double, double> parse_interval(const std::string& s) {
  const auto comma = s.find(',');
  try {
    if (comma != std::string::npos)
      return {parse_flag_value<double>("", s.substr(0, comma)), parse_flag_value<double>("", s.substr(comma + 1))};
  } catch (const CLI::ValidationError&) {  // "0.4,1.0,2" and "0.4,1.0abc" were taken as 0.4,1.0
  }
  throw Error("--cfg_interval '" + s + "'", "expected two finite numbers A,B such as 0.4,1.0");
}

}  // namespace

void add_infer_command(CLI::App& app, Runner& run) {
  auto* cmd = app.add_subcommand("infer", "run a model: --mode understand | generate | edit | interleave");
  auto a = std::make_shared<InferArgs>();
  cmd->add_option("--model_path", a->model_path, "model directory (config + weights)")->required();
  cmd->add_option("--model_type", a->model_type, "model family; detected from the directory when omitted");
  cmd->add_option("--mode", a->mode, "understand | generate | edit | interleave")->default_str("understand");
  cmd->add_option("--prompt", a->prompt, "question, instruction or image description; <image> marks image places");
  cmd->add_option("--image", a->images, "input image (repeat for several)");
  cmd->add_option("--output", a->output, "output image path, .png or .jpg (numbered out_1.png, ... when several)");
  cmd->add_option("--trace", a->trace, "write named intermediates to this .safetensors file");
  optional_flag(cmd, "--seed", a->seed, "seed of the request's random generator");
  cmd->add_option("--device", a->device, "cpu | cuda | cuda:N")->default_str("cpu");
  cmd->add_option("--dtype", a->dtype, "fp32 | bf16 | fp16 | int8 (int8: decoder-layer linear weights, fp32 compute; default: fp32 on cpu, bf16 on cuda)");
  cmd->add_option("--threads", a->threads, "intra-op CPU threads (default: OMP_NUM_THREADS, else every CPU this process may use)");
  // text sampling
  optional_flag(cmd, "--max_new_tokens", a->text.max_new_tokens, "text tokens to generate at most (default: the family's)");
  optional_flag(cmd, "--temperature", a->text.temperature, "sampling temperature (0 = greedy)");
  optional_flag(cmd, "--top_k", a->text.top_k, "keep the k most likely tokens when sampling");
  optional_flag(cmd, "--top_p", a->text.top_p, "nucleus sampling threshold");
  // image sampling
  optional_flag(cmd, "--height", a->image.height, "output height");
  optional_flag(cmd, "--width", a->image.width, "output width");
  optional_flag(cmd, "--steps", a->image.steps, "flow-matching timesteps");
  optional_flag(cmd, "--timestep_shift", a->image.timestep_shift, "timestep shift");
  optional_flag(cmd, "--cfg_text_scale", a->image.cfg_text_scale, "text CFG scale");
  optional_flag(cmd, "--cfg_img_scale", a->image.cfg_img_scale, "image CFG scale");
  cmd->add_option("--cfg_interval", a->cfg_interval, "CFG interval A,B");
  optional_flag(cmd, "--cfg_renorm_type", a->image.cfg_renorm_type, "global | channel | text_channel");
  optional_flag(cmd, "--cfg_renorm_min", a->image.cfg_renorm_min, "CFG renorm minimum");
  cmd->add_option("--init_noise", a->image.init_noise, "safetensors file with the initial noise draws");
  // the families' own flags
  models::register_builtin_models();
  std::set<std::string> seen;
  for (const auto& fam : models::registered_families())
    for (const auto& fl : fam.extra_flags) {
      if (!seen.insert(fl.name).second) continue;
      const std::string name = fl.name;
      auto keep = [a, name](const std::string& v) { a->extra[name] = v; };
      using Kind = models::FlagSpec::Kind;
      switch (fl.kind) {
        case Kind::Switch: cmd->add_flag_callback(name, [a, name] { a->extra[name] = "true"; }, fl.help); break;
        case Kind::Int: cmd->add_option_function<std::string>(name, keep, fl.help)->check(CLI::TypeValidator<int64_t>()); break;
        case Kind::Number: cmd->add_option_function<std::string>(name, keep, fl.help)->check(CLI::Number); break;
        case Kind::Text: cmd->add_option_function<std::string>(name, keep, fl.help); break;
      }
    }

  cmd->callback([&run, a, cmd] {
    run = [a, cmd]() -> int {
      const auto& family = models::resolve_family(a->model_path, a->model_type);
      if (!std::filesystem::is_directory(a->model_path)) throw Error(a->model_path, "model directory not found");
      if (std::find(family.modes.begin(), family.modes.end(), a->mode) == family.modes.end()) {
        std::string modes;
        for (const auto& m : family.modes) modes += (modes.empty() ? "" : ", ") + m;
        throw Error("--mode " + a->mode, "not supported by " + family.name + " (supported: " + modes + ")");
      }
      check_flags(cmd, family, a->mode);

      models::LoadOptions lo;
      lo.path = a->model_path;
      lo.inference_only = true;
      lo.device = models::parse_device(a->device);
      if (!a->dtype.empty()) lo.dtype = models::parse_dtype(a->dtype);
      models::check_dtype_on_device(lo.resolved_dtype(), lo.device);
      if (a->threads < 0) throw Error("--threads", "must be 1 or more");
      lo.threads = a->threads;

      // Everything the user gave is checked before the (slow) load: markers, image files,
      // output directory.
      models::Request req;
      if (a->prompt.find_first_not_of(" \t\r\n") == std::string::npos)
        throw Error("--prompt", "required (the question, instruction or image description)");
      req.input = generate::InterleavedInput::parse(a->prompt, a->images);
      if (family.read_image) req.input.decode_images(family.read_image);
      req.text = a->text;
      req.image = a->image;
      if (!a->cfg_interval.empty()) req.image.cfg_interval = parse_interval(a->cfg_interval);
      req.seed = a->seed;
      for (const auto& [k, v] : a->extra) req.extra.set(k, v);
      if (a->text.max_new_tokens && *a->text.max_new_tokens < 1) throw Error("--max_new_tokens", "must be at least 1");
      if (a->text.temperature && *a->text.temperature < 0) throw Error("--temperature", "must be >= 0 (0 = greedy)");
      if (a->text.top_k && *a->text.top_k < 0) throw Error("--top_k", "must be >= 0 (0 = off)");
      if (a->text.top_p && !(*a->text.top_p > 0 && *a->text.top_p <= 1)) throw Error("--top_p", "must be in (0, 1]");
      // 1 + (shift - 1) t cancels to 0 for a tiny shift: an infinite, then NaN, schedule
      if (a->image.timestep_shift && !(*a->image.timestep_shift >= 1e-6 && *a->image.timestep_shift <= 1e6))
        throw Error("--timestep_shift", "must be in [1e-6, 1e6]");
      std::string output = a->output;
      if (output.empty() && a->mode != "understand")
        throw Error("--output", "required for --mode " + a->mode + " (the image to write: .png or .jpg)");
      if (output.empty()) output = family.name + ".png";  // images drawn while understanding
      if (family.check) family.check(a->mode, req);
      // Neither output may replace an input (the weights, an image) or a device like /dev/full.
      std::vector<std::string> inputs = a->images;
      inputs.push_back(a->model_path);
      io::check_output_path("--output", output, inputs);
      io::output_image_format(output, "--output " + output);  // a format it cannot write: before any work
      if (!a->trace.empty()) {
        inputs.push_back(output);
        io::check_output_path("--trace", a->trace, inputs);
        if (std::filesystem::weakly_canonical(a->trace) == std::filesystem::weakly_canonical(output))
          throw Error("--trace " + a->trace, "is also the --output image");
      }

      lo.threads = models::set_threads(lo.threads);
      log_debug("model type ", family.name, " (", a->model_path, ")");
      auto model = family.load(lo);
      log_info(family.name, " on ", lo.device.str(), " in ", models::precision_name(lo, model->dtype()));
      io::Trace trace(a->trace);
      req.trace = &trace;
      CliSink sink(output);
      models::run_mode(*model, a->mode, req, sink);
      trace.save();
      return 0;
    };
  });
}

}  // namespace omni::cli
