// Helpers shared by the benches (timing, parameter counts, conv FLOP counts, number formatting).
#pragma once
#include <torch/torch.h>

#include <chrono>
#include <cstdio>
#include <string>

#include "omni/nn/vq.h"

namespace omni::bench {

using clk = std::chrono::steady_clock;

inline double secs(clk::time_point t) { return std::chrono::duration<double>(clk::now() - t).count(); }

inline int64_t numel_of(torch::nn::Module& m) {
  int64_t n = 0;
  for (const auto& p : m.parameters()) n += p.numel();
  return n;
}

// Bytes of the parameters as stored (an int8-quantized Linear counts 1 byte per weight).
inline int64_t bytes_of(torch::nn::Module& m) {
  int64_t n = 0;
  for (const auto& p : m.parameters()) n += p.numel() * static_cast<int64_t>(p.element_size());
  return n;
}

inline std::string fmt(const char* f, double v) {
  char b[64];
  std::snprintf(b, sizeof b, f, v);
  return b;
}

// Multiply-adds x 2 of a conv producing an out_h x out_w map.
inline double conv_flops(const torch::nn::Conv2d& c, int64_t out_h, int64_t out_w) {
  return 2.0 * static_cast<double>(c->weight.numel()) * out_h * out_w;
}
// The VQ / FLUX conv blocks at an hw x hw map.
inline double resblock_flops(const nn::VQResnetBlock& r, int64_t hw) {
  double f = conv_flops(r->conv1, hw, hw) + conv_flops(r->conv2, hw, hw);
  if (r->nin_shortcut) f += conv_flops(r->nin_shortcut, hw, hw);
  return f;
}
inline double attnblock_flops(const nn::VQAttnBlock& a, int64_t hw) {
  const double n = static_cast<double>(hw) * hw, c = static_cast<double>(a->q->weight.size(0));
  return conv_flops(a->q, hw, hw) + conv_flops(a->k, hw, hw) + conv_flops(a->v, hw, hw) +
         conv_flops(a->proj_out, hw, hw) + 2 * 2.0 * n * n * c;
}

}  // namespace omni::bench
