// `omni eval --task shapes`: the demo's generation and edit checks. For each text-to-image
// sample of a shapes data set (`omni shapes`'s JSONL: a caption, then "<image>") the model draws
// the caption; for each edit sample (a picture and "Make the <shape> <colour>.") it edits the
// picture. demo/shape_check.h decides whether the result shows what was asked.
#pragma once
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "omni/demo/shapes.h"
#include "omni/models/model.h"

namespace omni::eval {

struct DrawingOptions {
  std::string image_root;    // default: the data file's folder
  bool allow_absolute = false;
  int64_t limit = 0;         // samples of each kind checked at most (0 = all)
  std::optional<int> steps;  // flow steps (the family's default when unset)
  std::optional<double> cfg_text_scale, cfg_img_scale;  // the family's defaults when unset (img: edits only)
  uint64_t seed = 0;
  std::string predictions;   // JSONL of per-sample results ("" = none)
  bool generate = true, edit = true;  // which kinds to check (a family may only draw)
};

struct DrawingResult {
  int64_t generated = 0, generated_right = 0, edited = 0, edited_right = 0;
};

// The text-to-image and edit samples of `data` to check (other samples are skipped; o.limit,
// o.generate and o.edit applied), each with the scene it must show. Throws omni::Error
// "file:line: why" for a sample that is not of the shapes grammar, and "file: why" where no
// sample is left to check (a multiple-choice file, say) — before any model loads.
struct DrawTask {
  std::string id, where, prompt;
  std::string source;  // the edit's input picture (resolved); empty for text-to-image
  std::string target;  // the data set's own answer picture (resolved): its size is the request's
  demo::Scene expected;
};
std::vector<DrawTask> read_drawing_tasks(const std::string& data,
                                         const std::function<io::Image(const std::string&)>& read_image,
                                         const DrawingOptions& o);

DrawingResult evaluate_drawing(models::Model& model, const std::vector<DrawTask>& tasks,
                               const std::function<io::Image(const std::string&)>& read_image, const DrawingOptions& o,
                               const std::function<void(const DrawingResult&)>& on_item = {});

}  // namespace omni::eval
