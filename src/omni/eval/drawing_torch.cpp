#include "omni/eval/drawing_torch.h"

#include <torch/torch.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "omni/core/error.h"
#include "omni/io/output_file.h"
#include "omni/demo/shape_check.h"
#include "omni/io/data_paths.h"

namespace omni::eval {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;

class PictureSink final : public models::OutputSink {
 public:
  void text(const std::string& piece) override { said += piece; }  // a plan written before drawing
  std::string image(const io::Image& img) override {
    last = img;
    ++count;
    return "";
  }
  io::Image last;
  int count = 0;
  std::string said;
};

std::vector<DrawTask> read_tasks(const std::string& file, const DrawingOptions& o) {  // the samples, unchecked
  std::ifstream in(file);
  if (!in) throw Error(file, "cannot open the data file");
  const std::string root = o.image_root.empty() ? fs::path(file).parent_path().string() : o.image_root;
  std::vector<DrawTask> tasks;
  int line_no = 0;
  for (std::string line; std::getline(in, line);) {
    ++line_no;
    if (line.find_first_not_of(" \t\r\n") == std::string::npos) continue;
    DrawTask t;
    t.where = file + ":" + std::to_string(line_no);
    json j;
    try {
      j = json::parse(line);
    } catch (const json::exception&) {
      throw Error(t.where, "not JSON");
    }
    const auto conv = j.value("conversations", json::array());
    if (!conv.is_array() || conv.size() != 2 || !conv[1].is_object() || conv[1].value("value", "") != "<image>") continue;
    const auto images = j.value("images", json::array());
    if (!images.is_array() || images.empty() || images.size() > 2) continue;
    t.id = j.value("id", std::to_string(line_no));
    t.prompt = conv[0].value("value", "");
    auto path = [&](const json& p) {
      if (!p.is_string()) throw Error(t.where, "\"images\" must be a list of paths");
      return io::resolve_data_path(p.get<std::string>(), root, o.allow_absolute, t.where, "--allow_absolute_paths");
    };
    t.target = path(images.back());
    if (images.size() == 2) t.source = path(images[0]);
    tasks.push_back(std::move(t));
  }
  return tasks;
}

demo::Scene scene_of(const std::vector<demo::Shape>& shapes) {
  demo::Scene s;
  s.shapes = shapes;
  return s;
}

}  // namespace

std::vector<DrawTask> read_drawing_tasks(const std::string& data,
                                         const std::function<io::Image(const std::string&)>& read_image,
                                         const DrawingOptions& o) {
  std::vector<DrawTask> kept;
  int64_t generations = 0, edits = 0;
  for (auto& t : read_tasks(data, o)) {
    const bool edit = !t.source.empty();
    if (!(edit ? o.edit : o.generate) || (o.limit > 0 && (edit ? edits : generations) >= o.limit)) continue;
    (edit ? edits : generations) += 1;
    if (!edit) {
      if (!demo::parse_caption(t.prompt, t.expected)) throw Error(t.where, "not a shapes caption: \"" + t.prompt + "\"");
    } else {
      std::string instruction = t.prompt;
      if (instruction.rfind("<image>", 0) == 0) instruction = instruction.substr(7);
      const auto before = scene_of(demo::find_shapes(read_image(t.source)));
      if (!demo::apply_edit(before, instruction, t.expected))
        throw Error(t.where, "not a shapes edit of its picture: \"" + instruction + "\"");
    }
    kept.push_back(std::move(t));
  }
  // A score over nothing would read as a result (and exit 0): a wrong file is an error, as an
  // empty multiple-choice file is.
  if (kept.empty())
    throw Error(data, std::string("no samples to draw: no text-to-image") + (o.edit ? " or edit" : "") +
                          " sample (a conversation answered \"<image>\" with its picture in \"images\")" +
                          (o.edit ? "" : "; this model does not edit"));
  return kept;
}

DrawingResult evaluate_drawing(models::Model& model, const std::vector<DrawTask>& tasks,
                               const std::function<io::Image(const std::string&)>& read_image, const DrawingOptions& o,
                               const std::function<void(const DrawingResult&)>& on_item) {
  io::LineOutput preds(o.predictions);  // moved into place once every item is written
  c10::InferenceMode guard;
  DrawingResult r;
  for (size_t i = 0; i < tasks.size(); ++i) {
    const auto& t = tasks[i];
    const bool edit = !t.source.empty();
    const io::Image target = read_image(t.target);
    models::Request req;
    req.input = generate::InterleavedInput::parse(t.prompt, edit ? std::vector<std::string>{t.source} : std::vector<std::string>{});
    req.input.decode_images(read_image);
    req.image.height = target.height;
    req.image.width = target.width;
    req.image.steps = o.steps;
    req.image.cfg_text_scale = o.cfg_text_scale;
    if (edit) req.image.cfg_img_scale = o.cfg_img_scale;
    req.seed = o.seed;
    PictureSink sink;
    models::run_mode(model, edit ? "edit" : "generate", req, sink);
    if (sink.count == 0) throw Error(t.where, model.family() + " drew no picture");
    const bool right = demo::shows(sink.last, t.expected, false);
    (edit ? r.edited : r.generated) += 1;
    (edit ? r.edited_right : r.generated_right) += right;
    if (preds) {
      json p{{"id", t.id},
             {"task", edit ? "edit" : "generate"},
             {"asked", demo::caption(t.expected)},
             {"drawn", demo::caption(scene_of(demo::find_shapes(sink.last)))},
             {"right", right}};
      const auto end = sink.said.find_last_not_of(" \n");
      if (end != std::string::npos) p["thought"] = sink.said.substr(0, end + 1);  // --think / think_before_edit
      preds.write_line(p.dump());
    }
    if (on_item) on_item(r);
  }
  preds.commit();
  return r;
}

}  // namespace omni::eval
