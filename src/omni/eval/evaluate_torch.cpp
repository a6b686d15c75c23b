#include "omni/eval/evaluate_torch.h"

#include <torch/torch.h>

#include <fstream>
#include <limits>
#include <nlohmann/json.hpp>

#include "omni/core/error.h"
#include "omni/io/output_file.h"
#include "omni/generate/random.h"

namespace omni::eval {
namespace {

using json = nlohmann::json;

// Collects the streamed answer; images drawn while answering are dropped.
class AnswerSink final : public models::OutputSink {
 public:
  void text(const std::string& piece) override { text_ += piece; }
  std::string image(const io::Image&) override { return ""; }
  const std::string& answer() const { return text_; }

 private:
  std::string text_;
};

// Minus the summed cross-entropy of `option` as the assistant's reply to the question.
double option_loglik(models::Trainable& t, const generate::InterleavedInput& question, const std::string& option,
                     at::Generator& gen) {
  models::TrainExample ex;
  ex.turns.push_back({"user", question});
  ex.turns.push_back({"assistant", generate::InterleavedInput::parse(option, {})});
  const auto losses = t.forward_train(ex, gen);
  return losses.ce.defined() ? -losses.ce.sum().item<double>() : -std::numeric_limits<double>::infinity();
}

}  // namespace

EvalResult evaluate_multiple_choice(models::Model& model, const std::vector<McItem>& items,
                                    const std::function<io::Image(const std::string&)>& read_image,
                                    const EvalOptions& o, const std::function<void(const EvalResult&)>& on_item) {
  if (o.score != "generate" && o.score != "loglik") throw Error("--score", "must be generate or loglik, got '" + o.score + "'");
  models::Trainable* trainable = nullptr;
  if (o.score == "loglik") {
    trainable = models::as_trainable(model);
    if (!trainable) throw Error("--score loglik", model.family() + " cannot score answers (it has no training forward)");
    // no condition dropout while scoring: every option sees the whole question
    trainable->set_train_options({{"text_cond_dropout_prob", 0.0}, {"vit_cond_dropout_prob", 0.0},
                                  {"vae_cond_dropout_prob", 0.0}, {"cfg_txt_uncond_drop_prob", 0.0},
                                  {"cfg_img_uncond_drop_prob", 0.0}, {"cfg_txtimg_uncond_drop_prob", 0.0}});
  }
  io::LineOutput preds(o.predictions);  // moved into place once every item is written
  c10::InferenceMode guard;
  EvalResult r;
  for (const auto& item : items) {
    json out{{"id", item.id}, {"answer", option_letter(item.answer)}};
    int choice = -1;
    if (trainable) {
      auto question = generate::InterleavedInput::parse(item.question, item.images);
      question.decode_images(read_image);
      std::vector<double> scores;
      for (const auto& opt : item.options) {
        at::Generator gen = generate::make_generator(model.device(), 0);
        scores.push_back(option_loglik(*trainable, question, opt, gen));
        if (scores.back() > (choice < 0 ? -std::numeric_limits<double>::infinity() : scores[static_cast<size_t>(choice)]))
          choice = static_cast<int>(scores.size()) - 1;
      }
      out["scores"] = scores;
    } else {
      models::Request req;
      req.input = generate::InterleavedInput::parse(multiple_choice_prompt(item), item.images);
      req.input.decode_images(read_image);
      req.text.max_new_tokens = o.max_new_tokens;
      req.text.temperature = 0.0;
      req.seed = 0;
      AnswerSink sink;
      models::run_mode(model, "understand", req, sink);
      out["prediction"] = sink.answer();
      choice = parse_choice(sink.answer(), item.options);
    }
    ++r.total;
    if (choice < 0) ++r.unanswered;
    if (choice == item.answer) ++r.correct;
    out["choice"] = choice < 0 ? json(nullptr) : json(option_letter(choice));
    out["correct"] = choice == item.answer;
    preds.write_line(out.dump(-1, ' ', false, json::error_handler_t::replace));
    if (on_item) on_item(r);
  }
  preds.commit();
  return r;
}

}  // namespace omni::eval
