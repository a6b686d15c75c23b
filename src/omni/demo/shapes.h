// A procedurally generated data set of simple scenes for the bundled demo model (`omni shapes`):
// one or two filled shapes (circle, square, triangle, diamond) in six colours, two sizes and five
// places, on a plain or two-tone light background, with everything a unified model learns from:
// captions, questions and answers, text-to-image and edits, in the trainer's JSONL format, plus a
// multiple-choice set for `omni eval`. Deterministic by seed on every platform: one splitmix64
// stream per split, mapped to values by hand (the standard library's distributions are not
// specified bit for bit).
#pragma once
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "omni/io/image.h"

namespace omni::demo {

struct Rgb {
  uint8_t r, g, b;
};

// The vocabularies (index = the scene's code for it).
const std::vector<std::string>& shape_names();     // circle, square, triangle, diamond
const std::vector<std::string>& colour_names();    // red, green, blue, yellow, purple, orange
const std::vector<Rgb>& colour_values();
const std::vector<std::string>& place_names();     // left, right, top, bottom, center
const std::vector<std::string>& size_names();      // small, large
// Where a place puts a shape's centre, as fractions of the side (x, y); a size's radius likewise;
// a kind's area in units of its radius squared.
std::pair<double, double> place_centre(int place);
double size_radius(int size);
double kind_area(int kind);
std::string place_phrase(int place);  // "on the left", "at the top", "in the center", ...

struct Shape {
  int kind = 0, colour = 0, size = 0, place = 0;
  double cx = 0, cy = 0, radius = 0;  // in pixels: where it is drawn (the place plus jitter)
};

struct Scene {
  std::vector<Shape> shapes;  // 1 or 2; two shapes sit left and right and differ in kind
  Rgb background_top{255, 255, 255}, background_bottom{255, 255, 255};  // equal = plain
  int size = 64;
};

// A deterministic random stream (splitmix64).
class Random {
 public:
  explicit Random(uint64_t seed);
  int below(int n);       // uniform in [0, n)
  double uniform();       // in [0, 1)

 private:
  uint64_t state_;
  uint64_t next();
};

// `two_in_ten`: how many scenes in ten have two shapes (0..10; the rest have one).
Scene random_scene(Random& rng, int size, int two_in_ten = 3);
io::Image render(const Scene& s);  // 4x4 supersampled edges

// "a large red circle on the left", "a small blue square on the left and a green triangle on the right"
std::string caption(const Scene& s);

struct ShapesOptions {
  std::string output;  // folder (created); images/ and the JSONL files go there
  uint64_t seed = 0;
  int size = 64;
  int train_scenes = 2000, heldout_scenes = 200;
  // Multiple-choice samples per scene, of distinct question kinds (1..5; 5 = every kind). The
  // first asks what the scene's free-form question asks.
  int mc_questions = 1;
  // How a multiple-choice sample is answered: "letter" ("C") or "reply" (the free-form answer,
  // "Green.", which names the option in words).
  std::string mc_answer = "letter";
  // Scenes in ten with two shapes (0..10). Edits of two-shape scenes are the hard ones (recolour
  // one shape, keep the other): a data set weighted to them trains that.
  int two_shapes = 3;
  // Edit samples per scene (1..4), each recolouring one shape; in a two-shape scene they take
  // the shapes in turn, so the same picture is edited at both shapes.
  int edits = 1;
  // Edits in ten (0..10) that also name the shape's place ("Make the square on the left
  // yellow."): the recolouring at a named place, a step on the way to finding the named shape.
  int edit_place = 0;
  // Edits answered with a plan first: a think block holding the edited scene's caption, then the
  // picture ("<think>\nA green circle on the left and ...\n</think>\n\n" + image). The plan names
  // every shape with its colour and place, so drawing it is text-to-image with a picture to copy.
  bool edit_plan = false;
};

// Writes images/*.png, train.jsonl and heldout.jsonl (per scene: a caption, a free-form answer,
// mc_questions multiple-choice samples, text-to-image and `edits` colour edits) and eval_mc.jsonl (one
// multiple-choice question per held-out scene). Returns the number of samples written per file,
// in that order.
std::vector<int64_t> write_shapes_dataset(const ShapesOptions& o);

}  // namespace omni::demo
