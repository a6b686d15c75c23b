#include "omni/demo/shape_check.h"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <sstream>

#include "omni/core/strings.h"

namespace omni::demo {
namespace {

int index_of(const std::vector<std::string>& names, const std::string& s) {
  const auto it = std::find(names.begin(), names.end(), s);
  return it == names.end() ? -1 : static_cast<int>(it - names.begin());
}

// A caption or instruction lowered, without its closing full stop and trailing spaces.
std::string sentence(const std::string& text) {
  std::string t = ascii_lower(text);
  while (!t.empty() && (t.back() == '.' || std::isspace(static_cast<unsigned char>(t.back())))) t.pop_back();
  return t;
}

// "a large red circle on the left" -> one shape (its pixel position left at zero).
bool parse_one(const std::string& part, Shape& sh) {
  std::istringstream in(part);
  std::string a, size, colour, kind;
  if (!(in >> a >> size >> colour >> kind) || a != "a") return false;
  std::string phrase, w;
  while (in >> w) phrase += (phrase.empty() ? "" : " ") + w;
  sh.size = index_of(size_names(), size);
  sh.colour = index_of(colour_names(), colour);
  sh.kind = index_of(shape_names(), kind);
  sh.place = -1;
  for (int p = 0; p < static_cast<int>(place_names().size()); ++p)
    if (place_phrase(p) == phrase) sh.place = p;
  return sh.size >= 0 && sh.colour >= 0 && sh.kind >= 0 && sh.place >= 0;
}

double distance2(const double* a, const Rgb& b) {
  const double d[3] = {a[0] - b.r, a[1] - b.g, a[2] - b.b};
  return d[0] * d[0] + d[1] * d[1] + d[2] * d[2];
}

// The per-channel median of the border pixels in rows [y0, y1).
Rgb border_colour(const io::Image& img, int y0, int y1) {
  std::vector<int> ch[3];
  auto add = [&](int x, int y) {
    for (int c = 0; c < 3; ++c) ch[c].push_back(img.at(x, y, c));
  };
  for (int y = y0; y < y1; ++y) {
    add(0, y);
    add(img.width - 1, y);
  }
  const int row = y0 == 0 ? 0 : img.height - 1;
  for (int x = 0; x < img.width; ++x) add(x, row);
  uint8_t m[3];
  for (int c = 0; c < 3; ++c) {
    std::nth_element(ch[c].begin(), ch[c].begin() + static_cast<long>(ch[c].size() / 2), ch[c].end());
    m[c] = static_cast<uint8_t>(ch[c][ch[c].size() / 2]);
  }
  return {m[0], m[1], m[2]};
}

}  // namespace

bool parse_caption(const std::string& text, Scene& out) {
  const std::string t = sentence(text);
  out = Scene();
  size_t start = 0;
  while (true) {
    const size_t at = t.find(" and ", start);
    Shape sh;
    if (!parse_one(t.substr(start, at == std::string::npos ? std::string::npos : at - start), sh)) return false;
    out.shapes.push_back(sh);
    if (at == std::string::npos) break;
    start = at + 5;
  }
  return out.shapes.size() <= 2;
}

std::vector<Shape> find_shapes(const io::Image& img) {
  const int W = img.width, H = img.height;
  const Rgb top = border_colour(img, 0, H / 2), bottom = border_colour(img, H / 2, H);
  std::vector<uint8_t> fg(static_cast<size_t>(W) * H, 0);
  for (int y = 0; y < H; ++y)
    for (int x = 0; x < W; ++x) {
      const Rgb& bg = y < H / 2 ? top : bottom;
      const int d = std::abs(img.at(x, y, 0) - bg.r) + std::abs(img.at(x, y, 1) - bg.g) + std::abs(img.at(x, y, 2) - bg.b);
      fg[static_cast<size_t>(y) * W + x] = d > 90;
    }
  std::vector<int> label(fg.size(), -1);
  std::vector<Shape> found;
  const double S = std::sqrt(static_cast<double>(W) * H);
  for (int start = 0; start < W * H; ++start) {
    if (!fg[static_cast<size_t>(start)] || label[static_cast<size_t>(start)] >= 0) continue;
    std::vector<int> pixels{start}, stack{start};
    label[static_cast<size_t>(start)] = start;
    while (!stack.empty()) {
      const int p = stack.back();
      stack.pop_back();
      const int x = p % W, y = p / W;
      const int nb[4][2] = {{x - 1, y}, {x + 1, y}, {x, y - 1}, {x, y + 1}};
      for (const auto& n : nb) {
        if (n[0] < 0 || n[1] < 0 || n[0] >= W || n[1] >= H) continue;
        const int q = n[1] * W + n[0];
        if (!fg[static_cast<size_t>(q)] || label[static_cast<size_t>(q)] >= 0) continue;
        label[static_cast<size_t>(q)] = start;
        pixels.push_back(q);
        stack.push_back(q);
      }
    }
    const double area = static_cast<double>(pixels.size());
    if (area < 0.01 * W * H) continue;
    int x0 = W, x1 = -1, y0 = H, y1 = -1;
    double sx = 0, sy = 0, mean[3] = {0, 0, 0};
    int core = 0;
    for (int p : pixels) {
      const int x = p % W, y = p / W;
      x0 = std::min(x0, x), x1 = std::max(x1, x), y0 = std::min(y0, y), y1 = std::max(y1, y);
      sx += x + 0.5, sy += y + 0.5;
      const bool inner = x > 0 && y > 0 && x + 1 < W && y + 1 < H && fg[static_cast<size_t>(p - 1)] &&
                         fg[static_cast<size_t>(p + 1)] && fg[static_cast<size_t>(p - W)] && fg[static_cast<size_t>(p + W)];
      if (!inner) continue;  // the colour from the inside, not the blended edge
      for (int c = 0; c < 3; ++c) mean[c] += img.at(x, y, c);
      ++core;
    }
    if (core == 0)
      for (int p : pixels)
        for (int c = 0; c < 3; ++c) mean[c] += img.at(p % W, p / W, c), core += c == 0;
    for (double& m : mean) m /= core;
    Shape sh;
    double best = 1e300;
    for (int c = 0; c < static_cast<int>(colour_values().size()); ++c)
      if (const double d = distance2(mean, colour_values()[static_cast<size_t>(c)]); d < best) best = d, sh.colour = c;
    sh.cx = sx / area;
    sh.cy = sy / area;
    best = 1e300;
    for (int p = 0; p < static_cast<int>(place_names().size()); ++p) {
      const auto [px, py] = place_centre(p);
      const double d = std::pow(sh.cx / W - px, 2) + std::pow(sh.cy / H - py, 2);
      if (d < best) best = d, sh.place = p;
    }
    const double box = static_cast<double>(x1 - x0 + 1) * (y1 - y0 + 1), fill = area / box;
    if (fill >= 0.88) {
      sh.kind = 1;
    } else if (fill >= 0.68) {
      sh.kind = 0;
    } else {  // a triangle holds a quarter of its area in its upper half, a diamond half
      const double mid = (y0 + y1 + 1) / 2.0;
      int upper = 0;
      for (int p : pixels) upper += (p / W) + 0.5 < mid;
      sh.kind = upper < 0.375 * area ? 2 : 3;
    }
    sh.radius = std::sqrt(area / kind_area(sh.kind));
    sh.size = sh.radius / S < std::sqrt(size_radius(0) * size_radius(1)) ? 0 : 1;
    found.push_back(sh);
  }
  return found;
}

bool shows(const io::Image& img, const Scene& expected, bool with_size) {
  const auto found = find_shapes(img);
  if (found.size() != expected.shapes.size()) return false;
  std::vector<bool> used(found.size(), false);
  for (const auto& e : expected.shapes) {
    bool ok = false;
    for (size_t i = 0; i < found.size() && !ok; ++i) {
      const auto& f = found[i];
      if (used[i] || f.kind != e.kind || f.colour != e.colour || f.place != e.place) continue;
      if (with_size && f.size != e.size) continue;
      used[i] = ok = true;
    }
    if (!ok) return false;
  }
  return true;
}

bool apply_edit(const Scene& before, const std::string& instruction, Scene& after) {
  std::istringstream in(sentence(instruction));
  std::vector<std::string> w;
  for (std::string word; in >> word;) w.push_back(word);
  if (w.size() < 4 || w[0] != "make" || w[1] != "the") return false;
  const int k = index_of(shape_names(), w[2]), c = index_of(colour_names(), w.back());
  if (k < 0 || c < 0) return false;
  int place = -1;  // the words between the kind and the colour: none, or a place phrase
  if (w.size() > 4) {
    std::string between;
    for (size_t i = 3; i + 1 < w.size(); ++i) between += (between.empty() ? "" : " ") + w[i];
    for (int p = 0; p < static_cast<int>(place_names().size()); ++p)
      if (place_phrase(p) == between) place = p;
    if (place < 0) return false;
  }
  after = before;
  int hits = 0;
  for (auto& sh : after.shapes)
    if (sh.kind == k && (place < 0 || sh.place == place)) sh.colour = c, ++hits;
  return hits == 1;
}

}  // namespace omni::demo
