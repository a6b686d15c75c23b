// Multiple-choice visual questions for `omni eval` (the shape of MMBench / VisPuzzle style sets):
// one JSON object per line,
//   {"id": "q1", "image": "a.png" | "images": ["a.png", ...], "question": "...",
//    "options": ["circle", "square", ...], "answer": "B" | "square" | 1}
// `answer` is the right option's letter, its text, or its 0-based index. Images are relative to
// the image root (the data file's folder unless given); "<image>" markers in the question place
// them, otherwise they come first.
#pragma once
#include <string>
#include <vector>

namespace omni::eval {

struct McItem {
  std::string id;
  std::vector<std::string> images;  // resolved paths
  std::string question;
  std::vector<std::string> options;
  int answer = -1;    // index into options
  std::string where;  // "file:line", for messages
};

// Every item of `file`; throws omni::Error "file:line: why" on the first malformed one (bad
// JSON, missing or empty fields, fewer than 2 or more than 26 options, an answer that names no
// option, a missing image, an absolute or ".." image path unless allow_absolute).
std::vector<McItem> read_multiple_choice(const std::string& file, const std::string& image_root, bool allow_absolute);

std::string option_letter(int index);  // 0 -> "A"

// The question as a model is asked it (VLMEvalKit's MMBench prompt): image markers, the
// question, one "A. option" line per option, then "Answer with the option's letter from the
// given choices directly."
std::string multiple_choice_prompt(const McItem& item);

// The option a free-form answer picks, or -1: a bare letter ("B", "(B)", "B."), a letter
// opening the answer ("B. square"), the one option whose text the answer contains (the longest
// when one contains the others) unless a letter standing alone names another ("Green (C)."
// picks green only when C is green), or the one option letter standing alone in the answer.
int parse_choice(const std::string& answer, const std::vector<std::string>& options);

}  // namespace omni::eval
