// The model contract, in one header. A family is a folder src/omni/models/<name>/ plus one line
// in builtin.cpp; everything else (the CLI, the trainer, eval, benches) talks to this interface.
//
//   Family           name, aliases, detect(dir), load(LoadOptions) -> Model, the modes it serves
//                    and the flags each mode reads (the CLI rejects any other flag).
//   Model            a loaded checkpoint on a device in a dtype.
//   capabilities     opt-in interfaces a Model implements: Understands (image + text -> text),
//                    Generates (text -> image), Edits (image + instruction -> image), Interleaves
//                    (text and images out, in one stream), checked in one place: run_mode();
//                    Trainable (a conversation -> per-token losses under autograd, and the
//                    parameter groups to freeze), found with as_trainable().
//   OutputSink       where streamed text and finished images go (the CLI prints / writes PNGs).
//
// Requests are grouped by concern in request.h. Random draws come from a generator the request
// owns (Request::seed), never from libtorch's global one.
#pragma once
#include <ATen/core/Generator.h>
#include <ATen/core/Tensor.h>

#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "omni/io/image.h"
#include "omni/models/request.h"

namespace omni::nn {
class LayerRunner;
class SequenceParallel;
}

namespace omni::models {

class OutputSink {
 public:
  virtual ~OutputSink() = default;
  virtual void text(const std::string& piece) = 0;  // streamed text, in order
  // A finished image; returns where it went (e.g. the PNG path) for the model's own messages.
  virtual std::string image(const io::Image& img) = 0;
};

class Model {
 public:
  virtual ~Model() = default;
  virtual std::string family() const = 0;
  virtual c10::Device device() const = 0;
  virtual c10::ScalarType dtype() const = 0;
};

// ---- capabilities --------------------------------------------------------------------------
class Understands {
 public:
  virtual ~Understands() = default;
  virtual void understand(const Request& r, OutputSink& out) = 0;
};
class Generates {
 public:
  virtual ~Generates() = default;
  virtual void generate(const Request& r, OutputSink& out) = 0;
};
class Edits {
 public:
  virtual ~Edits() = default;
  virtual void edit(const Request& r, OutputSink& out) = 0;
};
// Text with images drawn where the model decides (text until an image-start token, an image,
// then text again), streamed to `out` in order.
class Interleaves {
 public:
  virtual ~Interleaves() = default;
  virtual void interleave(const Request& r, OutputSink& out) = 0;
};

// One supervised example: a conversation of user / assistant turns, each interleaved text and
// images. The losses are on what the assistant says: its text (cross-entropy on the tokens) and
// its images (the family's generation loss).
struct TrainTurn {
  std::string role;  // "user" | "assistant"
  generate::InterleavedInput content;
};
struct TrainExample {
  // Unset: the family's default for what the conversation does (as `omni infer` renders it, so a
  // fine-tuned model answers the prompts it was trained on); "" = no system prompt.
  std::optional<std::string> system_prompt;
  std::vector<TrainTurn> turns;
  // Optional per image, in marker order: how it enters the sequence (family-defined names, e.g.
  // BAGEL's "vit", "vae", "vae+vit", "target", "target+vae+vit"); empty = the family's rule.
  std::vector<std::string> image_roles;
  // Set by a family's CFG condition dropout (Trainable::draw_sample_variant) on the variant it
  // drew: the text condition was dropped, which some templates mark (U1: no empty think block).
  bool condition_dropped = false;
};

struct TrainLosses {
  at::Tensor ce;   // per supervised text token [N_ce] (undefined when there is none)
  at::Tensor gen;  // per generation-loss element (image-token CE or flow MSE; undefined when none)
};

// Parameters grouped by top-level module, named as in the checkpoint (e.g. "language_model",
// "vision_model"): the unit of freezing.
struct ParameterGroup {
  std::string name;
  std::vector<std::pair<std::string, at::Tensor>> parameters;  // full checkpoint names
};

// What a training example will cost and carry, known before its forward: the trainer refuses
// samples over data.max_seq_len and normalises each loss by its token count over the whole
// global batch before the first backward (as VeOmni's and BAGEL's trainers do).
// A family whose official loss weighs tokens unequally (SenseNova-U1: 1/sqrt(N) per document's
// text tokens, 1/sqrt(L) per image's tokens) returns the weighted per-token losses and states this
// sample's share of the normaliser in ce_norm / gen_norm (U1: sqrt(N), sqrt(L) summed); the trainer
// divides the global batch's loss sums by the global sums of the norms. 0 = the token count (a
// plain mean, as Janus and BAGEL).
struct TrainPlan {
  int64_t seq_len = 0;     // tokens the model's sequence holds (images included)
  int64_t ce_tokens = 0;   // elements forward_train returns in TrainLosses::ce
  int64_t gen_tokens = 0;  // elements forward_train returns in TrainLosses::gen
  double ce_norm = 0, gen_norm = 0;
  double ce_normaliser() const { return ce_norm > 0 ? ce_norm : static_cast<double>(ce_tokens); }
  double gen_normaliser() const { return gen_norm > 0 ? gen_norm : static_cast<double>(gen_tokens); }
};

// One freezing key of the trainer (train.freeze_vit, ...) and the parameters it covers, by
// checkpoint-name prefix ("*text" = names containing text, e.g. "*_moe_gen"). A "layers" key (unfreeze_vit_layers) names the layer list: the trainer
// slices its numbered children like Python's layers[N:].
struct FreezeKey {
  std::string key;
  std::vector<std::string> prefixes;
};

class Trainable {
 public:
  virtual ~Trainable() = default;
  virtual std::vector<ParameterGroup> parameter_groups() = 0;
  // The family's table of freezing keys (a key it does not list does not apply to it).
  virtual std::vector<FreezeKey> freeze_keys() = 0;
  // Lengths and loss-token counts of `ex`; throws omni::Error when the family cannot train on it.
  virtual TrainPlan plan(const TrainExample& ex) = 0;
  // Forward with autograd on; every random draw from `gen` (the run's generator).
  virtual TrainLosses forward_train(const TrainExample& ex, at::Generator& gen) = 0;
  // A micro-batch: families that pack samples into one sequence (BAGEL) run one forward; the
  // default runs forward_train per sample. Losses are concatenated in sample order.
  virtual TrainLosses forward_train_batch(const std::vector<const TrainExample*>& batch, at::Generator& gen);
  // Family-specific training knobs from the trainer's config (e.g. BAGEL's CFG dropout
  // probabilities "text_cond_dropout_prob", ...); a family ignores what it has no use for.
  virtual void set_train_options(const std::map<std::string, double>& options) {}
  // A family's random per-sample data rules that rewrite the conversation and so change its loss
  // tokens (U1: CFG condition dropout removes the prompt or the input images; the last image of an
  // interleaved answer sometimes gets its clean copy): the variant drawn from `gen` for this step,
  // or nothing to keep `ex`. The trainer plans the variant before the step's first forward.
  // Families whose dropout leaves the loss tokens alone (BAGEL) draw inside forward_train.
  virtual std::optional<TrainExample> draw_sample_variant(const TrainExample& ex, at::Generator& gen) {
    return std::nullopt;
  }
  // ---- sharded data parallel (train.data_parallel_mode fsdp, dist/fsdp.h) ----
  // The wrapping units: each decoder layer's parameter-name prefix ("language_model.model.layers.0"),
  // in the order the forward runs them; empty = the family cannot shard. The decoder calls its
  // layers through `runner` while training (nullptr: directly).
  virtual std::vector<std::string> layer_units() { return {}; }
  virtual void set_layer_runner(nn::LayerRunner* runner) {}
  // Whether forward_train_batch runs a micro-batch as one forward of the decoder (packing: BAGEL,
  // U1) or one forward per sample (the default): sharded processes run forwards in lockstep.
  virtual bool packs_micro_batches() const { return false; }
  // ---- Ulysses sequence parallelism (train.ulysses_size, nn/sequence_parallel.h) ----
  // The decoder then runs this process's rows of each sequence, and forward_train returns the
  // losses of the positions this process owns (SequenceParallel::Split::owns) only. Returns false
  // when the family cannot (the default).
  virtual bool set_sequence_parallel(nn::SequenceParallel* sp) { return false; }
  // Writes the weights files of the family's shipped layout into `dir` (the trainer copies the
  // configs and tokenizer), so `omni infer --model_path dir` loads the trained model. `source`,
  // when given, holds the trained parameters by checkpoint name where the model does not hold
  // them whole (fsdp: reassembled from the checkpoint's shard files one at a time); tensors are
  // written one at a time either way.
  using WeightSource = std::function<at::Tensor(const std::string& name)>;
  virtual void save_weights(const std::string& dir, const WeightSource& source = {}) = 0;
};
Trainable* as_trainable(Model& m);  // null when the family cannot train yet

// The one place a mode name meets a capability: "understand" -> Understands, "generate" ->
// Generates, "edit" -> Edits, "interleave" -> Interleaves. Throws omni::Error when the model lacks it.
void run_mode(Model& m, const std::string& mode, const Request& r, OutputSink& out);

// ---- families --------------------------------------------------------------------------------
struct FlagSpec {
  enum class Kind { Switch, Int, Number, Text };  // values are checked when the command line is parsed
  std::string name;  // "--cfg_weight"
  std::string help;
  Kind kind = Kind::Text;
};

struct Family {
  std::string name;                  // canonical --model_type, e.g. "janus"
  std::vector<std::string> aliases;  // config.json model_type values, e.g. "multi_modality"
  std::vector<std::string> modes;    // the --mode values it serves
  // Recognises a checkpoint directory (config keys, files); may be empty.
  std::function<bool(const std::string& dir)> detect;
  std::function<std::unique_ptr<Model>(const LoadOptions&)> load;
  // How the family's official code reads an image file (e.g. PIL convert("RGB") vs compositing
  // RGBA on white); the CLI decodes inputs with it before the slow load.
  std::function<io::Image(const std::string& path)> read_image;
  // Flags of its own, beyond the shared request groups (registered on `omni infer`).
  std::vector<FlagSpec> extra_flags;
  // Every request flag `mode` reads (shared or extra); a flag outside this list is an error.
  std::function<std::vector<std::string>(const std::string& mode)> flags;
  // Optional: what a request must hold for `mode` (image count, sizes, files), checked before the
  // slow load; throws omni::Error naming the flag.
  std::function<void(const std::string& mode, const Request& r)> check;
  // Optional (omni init): writes the weights of a new model of a config.json, drawn the way
  // Hugging Face's _init_weights draws them (nn/init_weights.h) with the options' seed.
  std::function<void(const InitOptions&)> init;
};

}  // namespace omni::models
