#include "omni/train/loss_plot.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdio>
#include <map>

#include "omni/io/image.h"

namespace omni::train {
namespace {

// 5x7 glyphs for the few characters the plot prints (rows top to bottom, bit 4 = left column).
const std::map<char, std::array<uint8_t, 7>>& font() {
  static const std::map<char, std::array<uint8_t, 7>> f = {
      {'0', {14, 17, 19, 21, 25, 17, 14}}, {'1', {4, 12, 4, 4, 4, 4, 14}},   {'2', {14, 17, 1, 2, 4, 8, 31}},
      {'3', {31, 2, 4, 2, 1, 17, 14}},     {'4', {2, 6, 10, 18, 31, 2, 2}},  {'5', {31, 16, 30, 1, 1, 17, 14}},
      {'6', {6, 8, 16, 30, 17, 17, 14}},   {'7', {31, 1, 2, 4, 8, 8, 8}},    {'8', {14, 17, 17, 14, 17, 17, 14}},
      {'9', {14, 17, 17, 15, 1, 2, 12}},   {'.', {0, 0, 0, 0, 0, 12, 12}},   {'-', {0, 0, 0, 31, 0, 0, 0}},
      {'e', {0, 0, 14, 17, 31, 16, 14}},   {'l', {12, 4, 4, 4, 4, 4, 14}},   {'o', {0, 0, 14, 17, 17, 17, 14}},
      {'s', {0, 0, 15, 16, 14, 1, 30}},    {'c', {0, 0, 14, 16, 16, 17, 14}}, {'g', {0, 15, 17, 17, 15, 1, 14}},
      {'n', {0, 0, 22, 25, 17, 17, 17}},   {'t', {8, 8, 28, 8, 8, 9, 6}},    {'p', {0, 0, 30, 17, 30, 16, 16}},
      {' ', {0, 0, 0, 0, 0, 0, 0}}};
  return f;
}

struct Canvas {
  io::Image img;
  Canvas(int w, int h) {
    img.width = w;
    img.height = h;
    img.rgb.assign(static_cast<size_t>(w) * h * 3, 255);
  }
  void px(int x, int y, const std::array<uint8_t, 3>& c) {
    if (x < 0 || y < 0 || x >= img.width || y >= img.height) return;
    auto* p = &img.rgb[(static_cast<size_t>(y) * img.width + x) * 3];
    p[0] = c[0];
    p[1] = c[1];
    p[2] = c[2];
  }
  void line(double x0, double y0, double x1, double y1, const std::array<uint8_t, 3>& c) {
    const int n = static_cast<int>(std::max(std::fabs(x1 - x0), std::fabs(y1 - y0))) + 1;
    for (int i = 0; i <= n; ++i) {
      const double t = static_cast<double>(i) / n;
      const int x = static_cast<int>(std::lround(x0 + (x1 - x0) * t)), y = static_cast<int>(std::lround(y0 + (y1 - y0) * t));
      px(x, y, c);
      px(x, y + 1, c);  // two pixels thick
    }
  }
  void text(int x, int y, const std::string& s, const std::array<uint8_t, 3>& c) {
    for (char ch : s) {
      auto it = font().find(ch);
      if (it != font().end())
        for (int r = 0; r < 7; ++r)
          for (int k = 0; k < 5; ++k)
            if (it->second[r] >> (4 - k) & 1) px(x + k, y + r, c);
      x += 6;
    }
  }
};

std::string number(double v) {
  char b[32];
  std::snprintf(b, sizeof b, "%.3g", v);
  return b;
}

}  // namespace

void write_loss_plot(const std::string& path, const std::vector<StepMetrics>& history) {
  const int W = 640, H = 360, left = 56, right = 16, top = 28, bottom = 28;
  Canvas cv(W, H);
  const std::array<uint8_t, 3> black{0, 0, 0}, grey{200, 200, 200}, blue{31, 119, 180}, orange{255, 127, 14};
  double ymax = 0;
  for (const auto& m : history) ymax = std::max({ymax, m.loss, m.ce_loss, m.gen_loss});
  if (!(ymax > 0) || !std::isfinite(ymax)) ymax = 1;
  const int64_t last = history.empty() ? 1 : std::max<int64_t>(1, history.back().step);
  const int64_t first = history.empty() ? 0 : history.front().step;
  auto X = [&](int64_t step) {
    return left + (W - left - right) * (last == first ? 0.5 : static_cast<double>(step - first) / (last - first));
  };
  auto Y = [&](double v) { return H - bottom - (H - top - bottom) * std::clamp(v / ymax, 0.0, 1.0); };
  for (int k = 0; k <= 4; ++k) cv.line(left, Y(ymax * k / 4), W - right, Y(ymax * k / 4), grey);
  cv.line(left, top, left, H - bottom, black);
  cv.line(left, H - bottom, W - right, H - bottom, black);
  cv.text(4, static_cast<int>(Y(ymax)) - 3, number(ymax), black);
  cv.text(4, static_cast<int>(Y(0)) - 3, "0", black);
  cv.text(left, H - bottom + 8, "step " + std::to_string(first), black);
  const std::string end = std::to_string(last);
  cv.text(W - right - 6 * static_cast<int>(end.size()), H - bottom + 8, end, black);
  struct Series {
    const char* name;
    double StepMetrics::*field;
    std::array<uint8_t, 3> color;
  };
  const Series series[] = {{"gen", &StepMetrics::gen_loss, orange}, {"ce", &StepMetrics::ce_loss, blue},
                           {"loss", &StepMetrics::loss, black}};
  int legend_x = left + 8;
  for (const auto& s : series) {
    bool any = false;
    for (const auto& m : history) any = any || m.*(s.field) != 0;
    if (!any && std::string(s.name) != "loss") continue;
    for (size_t i = 1; i < history.size(); ++i)
      cv.line(X(history[i - 1].step), Y(history[i - 1].*(s.field)), X(history[i].step), Y(history[i].*(s.field)), s.color);
    if (history.size() == 1) cv.line(X(history[0].step) - 2, Y(history[0].*(s.field)), X(history[0].step) + 2, Y(history[0].*(s.field)), s.color);
    cv.line(legend_x, 12, legend_x + 16, 12, s.color);
    cv.text(legend_x + 20, 9, s.name, black);
    legend_x += 28 + 6 * static_cast<int>(std::string(s.name).size()) + 12;
  }
  io::write_png(path, cv.img);
}

}  // namespace omni::train
