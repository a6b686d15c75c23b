// `omni eval`: a model answers every multiple-choice question of a set (multiple_choice.h) and is
// scored, with any family that understands images (Janus, BAGEL / ThinkMorph, SenseNova-U1).
//   generate  the family's own understanding path (its chat format) answers the lettered prompt
//             greedily; parse_choice reads the option from the answer.
//   loglik    each option's text is scored as the assistant's answer to the question (the
//             summed log-likelihood of its tokens, through the family's training forward); the
//             most likely option is the choice. Needs a trainable family.
#pragma once
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "omni/eval/multiple_choice.h"
#include "omni/models/model.h"

namespace omni::eval {

struct EvalOptions {
  std::string score = "generate";  // generate | loglik
  int max_new_tokens = 32;         // generate: answer length cap
  std::string predictions;         // a JSONL file of per-question results ("" = none)
};

struct EvalResult {
  int64_t total = 0, correct = 0, unanswered = 0;  // unanswered: no option read from the answer
  double accuracy() const { return total ? static_cast<double>(correct) / static_cast<double>(total) : 0.0; }
};

// `read_image`: the family's image decoder (Family::read_image). Reports each question done to
// `on_item` (for a progress bar).
EvalResult evaluate_multiple_choice(models::Model& model, const std::vector<McItem>& items,
                                    const std::function<io::Image(const std::string&)>& read_image,
                                    const EvalOptions& options, const std::function<void(const EvalResult&)>& on_item = {});

}  // namespace omni::eval
