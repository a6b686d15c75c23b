// Training data: JSONL conversations with interleaved images (the fork's ShareGPT-style format).
//
//   {"id": "...", "images": ["a.png", ...],
//    "conversations": [{"from": "human"|"gpt"|"system", "value": "...<image>..."}, ...]}
//   also "messages": [{"role": "user"|"assistant"|"system", "content": "..."}] and "image": "a.png".
//
// `<image>` markers take the next entry of `images`, in order across all turns. A marker in a
// user turn is an input image; a marker in an assistant turn is a generation target. Image
// paths are relative to data.image_root (default: the JSONL file's folder); absolute paths and
// ".." are refused unless data.allow_absolute_paths. Every problem is "file:line: reason".
#pragma once
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "omni/io/image.h"
#include "omni/models/model.h"
#include "omni/train/config.h"

namespace omni::train {

struct DataTurn {
  std::string role;  // "user" | "assistant"
  std::string text;  // with <image> markers
  std::vector<std::string> images;  // the resolved files its markers take
};

struct DataSample {
  std::string where;  // "file.jsonl:12"
  std::string id;
  std::optional<std::string> system_prompt;  // a leading system turn; unset = the family default
  std::vector<DataTurn> turns;
  std::vector<std::string> image_roles;  // optional "image_roles": one per image, in marker order
};

struct DataReport {
  int64_t lines = 0;    // non-blank lines read
  int64_t skipped = 0;  // bad samples skipped (data.skip_bad_samples)
};

// Parses every file of data.train_path. A bad line throws omni::Error("file:line", reason), or,
// with data.skip_bad_samples, is logged, counted in `report` and left out.
std::vector<DataSample> read_jsonl(const DataConfig& cfg, DataReport& report);

// One JSONL line (exposed for tests): throws omni::Error(where, reason).
DataSample parse_sample(const std::string& line, const std::string& where, const std::string& image_root,
                        bool allow_absolute_paths);

// The sample as the model interface's TrainExample, its images decoded with `read` (the family's
// image rule); an unreadable image throws omni::Error(where, reason).
models::TrainExample to_example(const DataSample& s, const std::function<io::Image(const std::string&)>& read);

}  // namespace omni::train
