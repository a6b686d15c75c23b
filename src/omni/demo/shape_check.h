// Checking a picture against what it should show: the demo model's generation and edit scores
// (issue 10). A deterministic image analysis of shapes.h's scenes, no model involved.
#pragma once
#include <string>
#include <vector>

#include "omni/demo/shapes.h"

namespace omni::demo {

// The scene a caption of caption()'s grammar describes (shapes' kind, colour, size and place; no
// pixel positions); false when the text is not such a caption.
bool parse_caption(const std::string& text, Scene& out);

// The shapes found in a picture: the background is the border's colour (per half, for two-tone
// backgrounds); pixels far from it form the shapes (4-connected regions over 1% of the picture).
// Each region's colour is its mean's nearest palette colour, its place the nearest of the five,
// its kind from how it fills its bounding box (a square fills it, a circle 79%, a triangle and a
// diamond half, the triangle's weight in its lower half), its size from its area.
std::vector<Shape> find_shapes(const io::Image& img);

// Whether the picture shows exactly the scene's shapes: the same count, each with its kind,
// colour and place (and size, with `with_size`).
bool shows(const io::Image& img, const Scene& expected, bool with_size);

// The scene after "Make the <shape> <colour>." or "Make the <shape> <place> <colour>." ("Make the
// square on the left red."); false when the instruction is not of that form or names no one shape
// of the scene.
bool apply_edit(const Scene& before, const std::string& instruction, Scene& after);

}  // namespace omni::demo
