// The demo data set (demo/shapes.h): shapes drawn where and how the scene says, captions that
// say it, files that are the same for the same seed, and a multiple-choice set omni eval reads.
#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <regex>
#include <set>
#include <sstream>

#include "omni/demo/shape_check.h"
#include "omni/demo/shapes.h"
#include "omni/eval/multiple_choice.h"
#include "omni/io/image.h"

using namespace omni;
using namespace omni::demo;
namespace fs = std::filesystem;

namespace {

Scene one(int kind, int colour, double cx, double cy, double r) {
  Scene s;
  s.size = 64;
  Shape sh;
  sh.kind = kind;
  sh.colour = colour;
  sh.cx = cx;
  sh.cy = cy;
  sh.radius = r;
  s.shapes.push_back(sh);
  return s;
}

bool has_colour(const io::Image& im, int x, int y, Rgb c) {
  return im.at(x, y, 0) == c.r && im.at(x, y, 1) == c.g && im.at(x, y, 2) == c.b;
}

std::string slurp(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

fs::path scratch(const std::string& name) {
  return fs::temp_directory_path() / ("omni_shapes_" + std::to_string(::getpid())) / name;
}

}  // namespace

TEST(Shapes, EachKindCoversItsOwnPixels) {
  const Rgb red = colour_values()[0], white{255, 255, 255};
  for (int kind = 0; kind < 4; ++kind) {
    const auto im = render(one(kind, 0, 32, 32, 12));
    EXPECT_TRUE(has_colour(im, 32, 32, red)) << shape_names()[kind];  // the centre
    EXPECT_TRUE(has_colour(im, 2, 2, white)) << shape_names()[kind];  // a corner of the picture
  }
  // what tells them apart: the square fills its corners, the circle and the diamond do not, the
  // triangle is wide at the bottom and narrow at the top
  EXPECT_TRUE(has_colour(render(one(1, 0, 32, 32, 12)), 32 + 9, 32 - 9, red));
  EXPECT_TRUE(has_colour(render(one(0, 0, 32, 32, 12)), 32 + 9, 32 - 9, white));
  EXPECT_TRUE(has_colour(render(one(3, 0, 32, 32, 12)), 32 + 9, 32 - 9, white));
  const auto tri = render(one(2, 0, 32, 32, 12));
  EXPECT_TRUE(has_colour(tri, 32 + 8, 32 + 7, red));
  EXPECT_TRUE(has_colour(tri, 32 + 8, 32 - 8, white));
}

TEST(Shapes, CaptionsSayWhatIsDrawn) {
  Scene s = one(2, 2, 20, 32, 10);
  s.shapes[0].size = 1;
  s.shapes[0].place = 0;
  EXPECT_EQ(caption(s), "a large blue triangle on the left");
  Shape right = s.shapes[0];
  right.kind = 0;
  right.colour = 5;
  right.size = 0;
  right.place = 1;
  s.shapes.push_back(right);
  EXPECT_EQ(caption(s), "a large blue triangle on the left and a small orange circle on the right");
}

TEST(Shapes, TheSameSeedWritesTheSameFiles) {
  ShapesOptions o;
  o.train_scenes = 6;
  o.heldout_scenes = 5;
  o.seed = 11;
  o.output = scratch("a").string();
  const auto counts = write_shapes_dataset(o);
  EXPECT_EQ(counts, (std::vector<int64_t>{30, 25, 5}));  // 5 samples a scene, 1 question a held-out scene
  o.output = scratch("b").string();
  write_shapes_dataset(o);
  for (const char* f : {"train.jsonl", "heldout.jsonl", "eval_mc.jsonl", "images/train_00003.png", "images/heldout_00004_edit.png"})
    EXPECT_EQ(slurp(scratch("a") / f), slurp(scratch("b") / f)) << f;
  o.seed = 12;
  o.output = scratch("c").string();
  write_shapes_dataset(o);
  EXPECT_NE(slurp(scratch("a") / "train.jsonl"), slurp(scratch("c") / "train.jsonl"));
  // held out: no training image is a held-out image
  EXPECT_NE(slurp(scratch("a") / "images/train_00000.png"), slurp(scratch("a") / "images/heldout_00000.png"));

  // the eval set reads as omni eval reads it, and each answer is the truth about its scene: the
  // held-out scene's caption names the right option
  const auto items = eval::read_multiple_choice((scratch("a") / "eval_mc.jsonl").string(), "", false);
  ASSERT_EQ(items.size(), 5u);
  std::map<std::string, std::string> captions;
  std::ifstream held(scratch("a") / "heldout.jsonl");
  for (std::string line; std::getline(held, line);) {
    const auto j = nlohmann::json::parse(line);
    const std::string id = j["id"];
    if (id.size() > 8 && id.substr(id.size() - 8) == "-caption") captions[id.substr(0, id.size() - 8)] = j["conversations"][1]["value"];
  }
  for (const auto& it : items) {
    const std::string truth = it.options[static_cast<size_t>(it.answer)];
    const std::string cap = captions.at(it.id);
    if (truth == "one" || truth == "two") {
      EXPECT_EQ(cap.find(" and ") != std::string::npos, truth == "two") << it.id << ": " << cap;
    } else {
      EXPECT_NE(cap.find(truth), std::string::npos) << it.id << ": " << it.question << " " << truth << " vs " << cap;
    }
  }
}

// Every question kind as multiple choice, answered in words: the answer names exactly one
// option, and it is the truth about the scene (its caption holds it).
TEST(Shapes, MultipleChoiceOfEveryKindAnsweredInWords) {
  ShapesOptions o;
  o.train_scenes = 8;
  o.heldout_scenes = 2;
  o.seed = 5;
  o.mc_questions = 5;
  o.mc_answer = "reply";
  o.output = scratch("mc").string();
  EXPECT_EQ(write_shapes_dataset(o), (std::vector<int64_t>{72, 18, 2}));  // 4 + 5 samples a scene
  std::ifstream in(scratch("mc") / "train.jsonl");
  std::map<std::string, std::string> captions;
  std::map<std::string, std::set<std::string>> questions;  // scene -> its multiple-choice questions
  const std::regex mc_id("(train-[0-9]+)-mc[2-5]?"), caption_id("(train-[0-9]+)-caption"), option("\n[A-D]\\. ([a-z]+)");
  for (std::string line; std::getline(in, line);) {
    const auto j = nlohmann::json::parse(line);
    std::smatch m;
    const std::string id = j["id"];
    const std::string prompt = j["conversations"][0]["value"], answer = j["conversations"][1]["value"];
    if (std::regex_match(id, m, caption_id)) captions[m[1]] = answer;
    if (!std::regex_match(id, m, mc_id)) continue;
    const std::string scene = m[1];
    std::vector<std::string> options;  // as the prompt lists them ("\nA. red\nB. blue...")
    for (auto it = std::sregex_iterator(prompt.begin(), prompt.end(), option); it != std::sregex_iterator(); ++it)
      options.push_back((*it)[1]);
    ASSERT_GE(options.size(), 2u) << prompt;
    EXPECT_TRUE(std::regex_match(answer, std::regex("[A-Z][a-z ]+\\."))) << id << ": " << answer;
    const int choice = eval::parse_choice(answer, options);
    ASSERT_GE(choice, 0) << id << ": " << answer;
    const std::string truth = options[static_cast<size_t>(choice)], cap = captions.at(scene);
    if (truth == "one" || truth == "two")
      EXPECT_EQ(cap.find(" and ") != std::string::npos, truth == "two") << id << ": " << cap;
    else
      EXPECT_NE(cap.find(truth), std::string::npos) << id << ": " << answer << " vs " << cap;
    questions[scene].insert(prompt.substr(0, prompt.find("\nA. ")));
  }
  ASSERT_EQ(questions.size(), 8u);
  for (const auto& [scene, qs] : questions) EXPECT_EQ(qs.size(), 5u) << scene;  // five distinct questions
}

namespace {

// The edits of a data set's train.jsonl, each checked: its prompt has the form `ask`, it names one
// shape of its scene (read from the scene's caption) and a colour that shape does not have, and
// the edited picture shows the scene with just that change (apply_edit, then shows). Returns
// scene id -> the kinds its edits named, and counts the edits in `edits`.
std::map<std::string, std::multiset<int>> checked_edits(const fs::path& folder, const std::regex& ask, int& edits) {
  std::ifstream in(folder / "train.jsonl");
  std::map<std::string, Scene> scenes;  // scene id -> its caption, parsed (captions come first)
  std::map<std::string, std::multiset<int>> kinds;
  const std::regex caption_id("(train-[0-9]+)-caption"), edit_id("(train-[0-9]+)-edit[2-4]?");
  edits = 0;
  for (std::string line; std::getline(in, line);) {
    const auto j = nlohmann::json::parse(line);
    const std::string id = j["id"], prompt = j["conversations"][0]["value"];
    std::smatch m;
    if (std::regex_match(id, m, caption_id)) EXPECT_TRUE(parse_caption(j["conversations"][1]["value"], scenes[m[1]])) << id;
    if (!std::regex_match(id, m, edit_id)) continue;
    EXPECT_TRUE(std::regex_match(prompt, ask)) << prompt;
    const Scene& before = scenes.at(m[1]);
    Scene want;
    if (!apply_edit(before, prompt.substr(std::string("<image>\n").size()), want)) {
      ADD_FAILURE() << id << ": the edit names no one shape of its scene: " << prompt;
      continue;
    }
    int changed = 0;
    for (size_t k = 0; k < want.shapes.size(); ++k)
      if (want.shapes[k].colour != before.shapes[k].colour) {
        ++changed;
        kinds[m[1]].insert(want.shapes[k].kind);
      }
    EXPECT_EQ(changed, 1) << id << ": a new colour for the named shape: " << prompt;
    const std::string answer = j["conversations"][1]["value"];
    if (answer != "<image>") {  // --edit_plan: a think block with the edited scene's caption first
      const std::string open = "<think>\n", close = "\n</think>\n\n<image>";
      Scene planned;
      const bool framed = answer.size() > open.size() + close.size() && answer.rfind(open, 0) == 0 &&
                          answer.compare(answer.size() - close.size(), close.size(), close) == 0;
      EXPECT_TRUE(framed && parse_caption(answer.substr(open.size(), answer.size() - open.size() - close.size()), planned) &&
                  planned.shapes.size() == want.shapes.size())
          << id << ": " << answer;
      for (size_t k = 0; k < planned.shapes.size() && k < want.shapes.size(); ++k) {
        const Shape &a = planned.shapes[k], &b = want.shapes[k];
        EXPECT_TRUE(a.kind == b.kind && a.colour == b.colour && a.place == b.place && a.size == b.size) << id << ": " << answer;
      }
    }
    EXPECT_TRUE(shows(io::read_image((folder / j["images"][1].get<std::string>()).string()), want, true)) << id;
    ++edits;
  }
  return kinds;
}

}  // namespace

// --two_shapes 10 --edits 2: every scene has two shapes and is edited at each of them; each edited
// picture shows the scene with just the named shape in the named colour.
TEST(Shapes, TwoShapeScenesAreEditedAtBothShapes) {
  ShapesOptions o;
  o.train_scenes = 6;
  o.heldout_scenes = 1;
  o.seed = 9;
  o.two_shapes = 10;
  o.edits = 2;
  o.output = scratch("two").string();
  EXPECT_EQ(write_shapes_dataset(o), (std::vector<int64_t>{36, 6, 1}));  // 4 + 2 samples a scene
  int edits = 0;
  const auto kinds = checked_edits(scratch("two"), std::regex("<image>\nMake the [a-z]+ [a-z]+\\."), edits);
  EXPECT_EQ(edits, 12);
  ASSERT_EQ(kinds.size(), 6u);
  for (const auto& [scene, k] : kinds)  // two edits, of the two different shapes
    EXPECT_TRUE(k.size() == 2 && *k.begin() != *k.rbegin()) << scene;
  const std::string two = slurp(scratch("two") / "train.jsonl");  // every caption names two shapes
  const std::regex two_shape_caption("\"A [a-z ]+ and a [a-z ]+\\.\"\\}\\],\"id\":\"train-[0-9]+-caption\"");
  EXPECT_EQ(std::distance(std::sregex_iterator(two.begin(), two.end(), two_shape_caption), std::sregex_iterator()), 6);
  o.edit_place = 10;  // every edit names the place too, and apply_edit reads it
  o.output = scratch("where").string();
  write_shapes_dataset(o);
  checked_edits(scratch("where"), std::regex("<image>\nMake the [a-z]+ (on|at|in) the [a-z]+ [a-z]+\\."), edits);
  EXPECT_EQ(edits, 12);
  o.edit_place = 0;
  o.edit_plan = true;  // each edit answered with the edited scene's caption, then the picture
  o.output = scratch("plan").string();
  write_shapes_dataset(o);
  checked_edits(scratch("plan"), std::regex("<image>\nMake the [a-z]+ [a-z]+\\."), edits);
  EXPECT_EQ(edits, 12);
  EXPECT_EQ(slurp(scratch("plan") / "train.jsonl").find("\"<image>\"}],\"id\":\"train-0-edit"), std::string::npos);
  o.edit_plan = false;
  o.two_shapes = 0;  // and none: one shape a scene
  o.edits = 1;
  o.output = scratch("one").string();
  EXPECT_EQ(write_shapes_dataset(o), (std::vector<int64_t>{30, 5, 1}));
  EXPECT_EQ(slurp(scratch("one") / "train.jsonl").find(" and a "), std::string::npos);
}

TEST(Shapes, BadOptionsAreErrors) {
  ShapesOptions o;
  o.output = scratch("bad").string();
  o.size = 8;
  EXPECT_THROW(write_shapes_dataset(o), std::exception);
  o.size = 64;
  o.mc_questions = 6;
  EXPECT_THROW(write_shapes_dataset(o), std::exception);
  o.mc_questions = 2;
  o.mc_answer = "word";
  EXPECT_THROW(write_shapes_dataset(o), std::exception);
  o.mc_answer = "letter";
  o.two_shapes = 11;
  EXPECT_THROW(write_shapes_dataset(o), std::exception);
  o.two_shapes = 3;
  o.edits = 0;
  EXPECT_THROW(write_shapes_dataset(o), std::exception);
  o.edits = 1;
  o.edit_place = -1;
  EXPECT_THROW(write_shapes_dataset(o), std::exception);
}

// The generation and edit checks (demo/shape_check.h) on the generator's own pictures: every
// rendered scene shows exactly its caption — kind, colour, place and size of each shape — and
// no scene shows a caption with one attribute changed.
TEST(ShapeCheck, RenderedScenesShowTheirOwnCaptionsAndNoOther) {
  for (int side : {64, 96}) {
    Random rng(42);
    int shown = 0, wrong_shown = 0;
    const int n = 300;
    for (int i = 0; i < n; ++i) {
      const Scene s = random_scene(rng, side);
      const auto img = render(s);
      Scene said;
      ASSERT_TRUE(parse_caption(caption(s) + ".", said)) << caption(s);
      shown += shows(img, said, true);
      Scene other = said;  // one attribute of one shape changed
      Shape& sh = other.shapes[static_cast<size_t>(i) % other.shapes.size()];
      switch (i % 3) {
        case 0: sh.colour = (sh.colour + 1) % 6; break;
        case 1: sh.kind = (sh.kind + 1) % 4; break;
        default: sh.size = 1 - sh.size; break;
      }
      wrong_shown += shows(img, other, true);
    }
    EXPECT_EQ(shown, n) << side << " px";
    EXPECT_EQ(wrong_shown, 0) << side << " px";
  }
}

TEST(ShapeCheck, EditsAndCaptionsParse) {
  Scene s;
  ASSERT_TRUE(parse_caption("A small red circle on the left and a large blue square on the right.", s));
  ASSERT_EQ(s.shapes.size(), 2u);
  EXPECT_EQ(s.shapes[1].kind, 1);
  EXPECT_EQ(s.shapes[1].place, 1);
  Scene e;
  ASSERT_TRUE(apply_edit(s, "Make the circle green.", e));
  EXPECT_EQ(e.shapes[0].colour, 1);
  EXPECT_EQ(e.shapes[1].colour, s.shapes[1].colour);
  EXPECT_FALSE(apply_edit(s, "Make the triangle green.", e));  // no triangle
  EXPECT_FALSE(apply_edit(s, "Paint the circle green.", e));
  ASSERT_TRUE(apply_edit(s, "Make the square on the right purple.", e));  // with the place
  EXPECT_EQ(e.shapes[1].colour, 4);
  EXPECT_EQ(e.shapes[0].colour, s.shapes[0].colour);
  EXPECT_FALSE(apply_edit(s, "Make the square on the left purple.", e));  // not where it is
  EXPECT_FALSE(apply_edit(s, "Make the square somewhere purple.", e));
  EXPECT_FALSE(apply_edit(s, "Make the square purple please.", e));
  EXPECT_FALSE(parse_caption("a huge red circle on the left", s));
  EXPECT_FALSE(parse_caption("two red circles", s));
}
