#include "omni/demo/shapes.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "omni/core/error.h"
#include "omni/eval/multiple_choice.h"

namespace omni::demo {
namespace fs = std::filesystem;
using json = nlohmann::json;

const std::vector<std::string>& shape_names() {
  static const std::vector<std::string> v{"circle", "square", "triangle", "diamond"};
  return v;
}
const std::vector<std::string>& colour_names() {
  static const std::vector<std::string> v{"red", "green", "blue", "yellow", "purple", "orange"};
  return v;
}
const std::vector<Rgb>& colour_values() {
  static const std::vector<Rgb> v{{220, 40, 40}, {40, 160, 60}, {40, 80, 210}, {235, 200, 30}, {140, 60, 180}, {240, 130, 20}};
  return v;
}
const std::vector<std::string>& place_names() {
  static const std::vector<std::string> v{"left", "right", "top", "bottom", "center"};
  return v;
}
const std::vector<std::string>& size_names() {
  static const std::vector<std::string> v{"small", "large"};
  return v;
}

namespace {
const double kPlaceX[] = {0.27, 0.73, 0.5, 0.5, 0.5}, kPlaceY[] = {0.5, 0.5, 0.27, 0.73, 0.5};
// Of the image side. Two large diamonds (the widest kind, 1.1 r) left and right keep a gap of
// 0.04 of the side; every shape stays inside the picture.
const double kRadius[] = {0.12, 0.18};
}  // namespace

std::pair<double, double> place_centre(int place) { return {kPlaceX[place], kPlaceY[place]}; }
double size_radius(int size) { return kRadius[size]; }
double kind_area(int kind) {
  // inside(): a disc; a square of half-side 0.85 r; a triangle of base 1.9 r and height 1.75 r;
  // a diamond of half-diagonal 1.1 r
  static const double a[] = {3.14159265358979, 4 * 0.85 * 0.85, 0.5 * 1.9 * 1.75, 2 * 1.1 * 1.1};
  return a[kind];
}

std::string place_phrase(int place) {
  static const char* p[] = {"on the left", "on the right", "at the top", "at the bottom", "in the center"};
  return p[place];
}

namespace {

// Light backgrounds, far from every shape colour.
const std::vector<Rgb> kBackgrounds{{255, 255, 255}, {225, 225, 225}, {240, 230, 210}, {215, 230, 245}, {245, 225, 230}};
std::string capitalised(std::string s) {
  if (!s.empty()) s[0] = static_cast<char>(std::toupper(static_cast<unsigned char>(s[0])));
  return s;
}

bool inside(const Shape& sh, double x, double y) {
  const double dx = x - sh.cx, dy = y - sh.cy, r = sh.radius;
  switch (sh.kind) {
    case 0: return dx * dx + dy * dy <= r * r;
    case 1: return std::abs(dx) <= 0.85 * r && std::abs(dy) <= 0.85 * r;
    case 2: {  // apex up at cy - r, base at cy + 0.75 r, half-width 0.95 r at the base
      if (dy < -r || dy > 0.75 * r) return false;
      return std::abs(dx) <= 0.95 * r * (dy + r) / 1.75 / r;
    }
    default: return std::abs(dx) + std::abs(dy) <= 1.1 * r;
  }
}

// `pair`: one of two shapes side by side, moved only away from the other.
Shape make_shape(Random& rng, int kind, int place, int size_px, bool pair) {
  Shape s;
  s.kind = kind;
  s.place = place;
  s.colour = rng.below(static_cast<int>(colour_names().size()));
  s.size = rng.below(2);
  const double S = size_px, jitter = 0.04 * S;
  const double jx = pair ? (place == 0 ? -rng.uniform() : rng.uniform()) : rng.uniform() * 2 - 1;
  s.cx = kPlaceX[place] * S + jx * jitter;
  s.cy = kPlaceY[place] * S + (rng.uniform() * 2 - 1) * jitter;
  s.radius = kRadius[s.size] * S * (0.95 + 0.1 * rng.uniform());
  return s;
}

json sample(const std::string& id, const std::vector<std::string>& images, const std::string& question,
            const std::string& answer) {
  return {{"id", id},
          {"images", images},
          {"conversations", json::array({{{"from", "human"}, {"value", question}}, {{"from", "gpt"}, {"value", answer}}})}};
}

// A question about the scene and its answer as an option index into `options` (filled here):
// the shape, a colour, a place, the count or a size, by `kind` (0..4).
struct Question {
  std::string text;
  std::vector<std::string> options;
  int answer = 0;
  std::string reply;  // the free-form answer ("A circle.")
  int kind = 0;
};

// Fisher–Yates, every draw from rng (std::shuffle's draws are not specified bit for bit).
template <class T>
void shuffle(Random& rng, std::vector<T>& v) {
  for (size_t i = v.size(); i > 1; --i) std::swap(v[i - 1], v[static_cast<size_t>(rng.below(static_cast<int>(i)))]);
}

// `n` options holding `right` and n - 1 others from `pool`, in an order drawn from rng.
std::vector<std::string> options_with(Random& rng, const std::vector<std::string>& pool, const std::string& right, int n,
                                      int& answer) {
  std::vector<std::string> others;
  for (const auto& p : pool)
    if (p != right) others.push_back(p);
  shuffle(rng, others);
  std::vector<std::string> opts(others.begin(), others.begin() + std::min<size_t>(others.size(), static_cast<size_t>(n - 1)));
  answer = rng.below(static_cast<int>(opts.size()) + 1);
  opts.insert(opts.begin() + answer, right);
  return opts;
}

Question ask(Random& rng, const Scene& s, int kind) {
  Question q;
  q.kind = kind;
  const bool two = s.shapes.size() == 2;
  const Shape& sh = s.shapes[static_cast<size_t>(two ? rng.below(2) : 0)];
  const std::string shape = shape_names()[static_cast<size_t>(sh.kind)];
  const std::string where = two ? " on the " + place_names()[static_cast<size_t>(sh.place)] : "";
  switch (kind) {
    case 0:
      q.text = two ? "What shape is on the " + place_names()[static_cast<size_t>(sh.place)] + "?" : "What shape is this?";
      q.options = options_with(rng, shape_names(), shape, 4, q.answer);
      q.reply = "A " + shape + ".";
      break;
    case 1:
      q.text = "What colour is the " + shape + "?";
      q.options = options_with(rng, colour_names(), colour_names()[static_cast<size_t>(sh.colour)], 4, q.answer);
      q.reply = capitalised(colour_names()[static_cast<size_t>(sh.colour)] + ".");
      break;
    case 2:
      q.text = "Where is the " + shape + "?";
      q.options = options_with(rng, place_names(), place_names()[static_cast<size_t>(sh.place)], 4, q.answer);
      q.reply = capitalised(place_phrase(sh.place) + ".");
      break;
    case 3:
      q.text = "How many shapes are there?";
      q.options = options_with(rng, {"one", "two", "three"}, two ? "two" : "one", 3, q.answer);
      q.reply = two ? "Two." : "One.";
      break;
    default:
      q.text = "Is the " + shape + where + " large or small?";
      q.options = options_with(rng, size_names(), size_names()[static_cast<size_t>(sh.size)], 2, q.answer);
      q.reply = capitalised(size_names()[static_cast<size_t>(sh.size)] + ".");
      break;
  }
  return q;
}

}  // namespace

Random::Random(uint64_t seed) : state_(seed) {}

uint64_t Random::next() {  // splitmix64
  uint64_t z = (state_ += 0x9E3779B97F4A7C15ULL);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
  return z ^ (z >> 31);
}

int Random::below(int n) { return static_cast<int>(next() % static_cast<uint64_t>(n)); }

double Random::uniform() { return static_cast<double>(next() >> 11) * (1.0 / 9007199254740992.0); }

Scene random_scene(Random& rng, int size, int two_in_ten) {
  Scene s;
  s.size = size;
  s.background_top = kBackgrounds[static_cast<size_t>(rng.below(static_cast<int>(kBackgrounds.size())))];
  s.background_bottom = rng.below(10) < 3 ? kBackgrounds[static_cast<size_t>(rng.below(static_cast<int>(kBackgrounds.size())))]
                                          : s.background_top;
  const int kinds = static_cast<int>(shape_names().size());
  if (rng.below(10) < 10 - two_in_ten) {
    s.shapes.push_back(make_shape(rng, rng.below(kinds), rng.below(5), size, false));
  } else {  // two different kinds, left and right
    const int a = rng.below(kinds);
    const int b = (a + 1 + rng.below(kinds - 1)) % kinds;
    s.shapes.push_back(make_shape(rng, a, 0, size, true));
    s.shapes.push_back(make_shape(rng, b, 1, size, true));
  }
  return s;
}

io::Image render(const Scene& s) {
  io::Image img(s.size, s.size);
  for (int y = 0; y < s.size; ++y)
    for (int x = 0; x < s.size; ++x) {
      int sum[3] = {0, 0, 0};
      for (int j = 0; j < 4; ++j)
        for (int i = 0; i < 4; ++i) {
          const double px = x + (i + 0.5) / 4, py = y + (j + 0.5) / 4;
          Rgb c = py < s.size / 2.0 ? s.background_top : s.background_bottom;
          for (const auto& sh : s.shapes)
            if (inside(sh, px, py)) c = colour_values()[static_cast<size_t>(sh.colour)];
          sum[0] += c.r;
          sum[1] += c.g;
          sum[2] += c.b;
        }
      for (int c = 0; c < 3; ++c) img.at(x, y, c) = static_cast<uint8_t>((sum[c] + 8) / 16);
    }
  return img;
}

std::string caption(const Scene& s) {
  std::string out;
  for (const auto& sh : s.shapes) {
    if (!out.empty()) out += " and ";
    out += "a " + size_names()[static_cast<size_t>(sh.size)] + " " + colour_names()[static_cast<size_t>(sh.colour)] + " " +
           shape_names()[static_cast<size_t>(sh.kind)] + " " + place_phrase(sh.place);
  }
  return out;
}

std::vector<int64_t> write_shapes_dataset(const ShapesOptions& o) {
  if (o.output.empty()) throw Error("--output", "required (the folder to write the data set to)");
  if (o.size < 16 || o.size > 1024) throw Error("--size", "must be in [16, 1024], got " + std::to_string(o.size));
  if (o.train_scenes < 1 || o.heldout_scenes < 0) throw Error("--train", "needs at least one training scene");
  if (o.mc_questions < 1 || o.mc_questions > 5)
    throw Error("--mc_questions", "must be in [1, 5] (one per question kind), got " + std::to_string(o.mc_questions));
  if (o.mc_answer != "letter" && o.mc_answer != "reply")
    throw Error("--mc_answer", "must be letter or reply, got \"" + o.mc_answer + "\"");
  if (o.edits < 1 || o.edits > 4)
    throw Error("--edits", "must be in [1, 4], got " + std::to_string(o.edits));
  if (o.edit_place < 0 || o.edit_place > 10)
    throw Error("--edit_place", "must be in [0, 10] (edits in ten that name the place), got " + std::to_string(o.edit_place));
  if (o.two_shapes < 0 || o.two_shapes > 10)
    throw Error("--two_shapes", "must be in [0, 10] (scenes in ten with two shapes), got " + std::to_string(o.two_shapes));
  std::error_code ec;
  fs::create_directories(fs::path(o.output) / "images", ec);
  if (ec) throw Error(o.output, "cannot create the folder: " + ec.message());
  std::vector<int64_t> counts(3, 0);
  std::ofstream mc(fs::path(o.output) / "eval_mc.jsonl");
  for (int split = 0; split < 2; ++split) {
    const std::string name = split == 0 ? "train" : "heldout";
    const int n = split == 0 ? o.train_scenes : o.heldout_scenes;
    Random rng(o.seed * 2 + static_cast<uint64_t>(split));  // the splits never share a stream
    std::ofstream out(fs::path(o.output) / (name + ".jsonl"));
    if (!out || !mc) throw Error(o.output, "cannot write the JSONL files");
    for (int i = 0; i < n; ++i) {
      char stem[64];
      std::snprintf(stem, sizeof stem, "images/%s_%05d", name.c_str(), i);
      const std::string img = std::string(stem) + ".png";
      Scene s = random_scene(rng, o.size, o.two_shapes);
      io::write_png((fs::path(o.output) / img).string(), render(s));
      const std::string cap = caption(s);
      const std::string id = name + "-" + std::to_string(i);
      // understanding: a caption, a free-form answer and the same question as multiple choice
      std::vector<json> lines;
      lines.push_back(sample(id + "-caption", {img}, "<image>\nDescribe the image.", capitalised(cap) + "."));
      const Question q = ask(rng, s, rng.below(5));
      lines.push_back(sample(id + "-qa", {img}, "<image>\n" + q.text, q.reply));
      std::vector<int> kinds{q.kind};  // the other kinds in an order drawn from rng
      if (o.mc_questions > 1) {
        std::vector<int> rest;
        for (int k = 0; k < 5; ++k)
          if (k != q.kind) rest.push_back(k);
        shuffle(rng, rest);
        kinds.insert(kinds.end(), rest.begin(), rest.begin() + (o.mc_questions - 1));
      }
      for (size_t k = 0; k < kinds.size(); ++k) {
        const Question m = k == 0 ? q : ask(rng, s, kinds[k]);
        eval::McItem item;
        item.images = {img};
        item.question = m.text;
        item.options = m.options;
        const std::string letter = eval::option_letter(m.answer);
        const std::string reply = o.mc_answer == "letter" ? letter : m.reply;
        lines.push_back(sample(id + "-mc" + (k == 0 ? "" : std::to_string(k + 1)), {img}, eval::multiple_choice_prompt(item), reply));
      }
      // generation: the caption drawn
      lines.push_back(sample(id + "-t2i", {img}, cap, "<image>"));
      // edits: one shape recoloured each; a later edit of a two-shape scene takes the other shape
      const int first = rng.below(static_cast<int>(s.shapes.size()));
      const int ncol = static_cast<int>(colour_names().size());
      for (int k = 0; k < o.edits; ++k) {
        const std::string suffix = k == 0 ? "" : std::to_string(k + 1);
        const std::string edited = std::string(stem) + "_edit" + suffix + ".png";
        Scene e = s;
        Shape& target = e.shapes[static_cast<size_t>(first + k) % e.shapes.size()];
        target.colour = (target.colour + 1 + rng.below(ncol - 1)) % ncol;
        const bool where = o.edit_place > 0 && rng.below(10) < o.edit_place;  // no draw by default
        io::write_png((fs::path(o.output) / edited).string(), render(e));
        lines.push_back(sample(id + "-edit" + suffix, {img, edited},
                               "<image>\nMake the " + shape_names()[static_cast<size_t>(target.kind)] + " " +
                                   (where ? place_phrase(target.place) + " " : "") +
                                   colour_names()[static_cast<size_t>(target.colour)] + ".",
                               o.edit_plan ? "<think>\n" + capitalised(caption(e)) + ".\n</think>\n\n<image>" : "<image>"));
      }
      for (const auto& l : lines) out << l.dump() << "\n";
      counts[static_cast<size_t>(split)] += static_cast<int64_t>(lines.size());
      if (split == 1) {  // the held-out scene's multiple-choice question for omni eval
        const Question m = ask(rng, s, i % 5);
        mc << json{{"id", id}, {"image", img}, {"question", m.text}, {"options", m.options},
                   {"answer", eval::option_letter(m.answer)}}
                  .dump()
           << "\n";
        ++counts[2];
      }
    }
  }
  return counts;
}

}  // namespace omni::demo
