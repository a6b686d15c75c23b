// Comparison helpers for golden-fixture alignment tests (Janus, BAGEL, ...). Each check prints one
// line with the worst error so test logs document how close an implementation is:
//   <name> max_abs=... mean_abs=... max_rel=... worst@i (got g, want w)  [tolerance]
#pragma once
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cstdio>
#include <iostream>
#include <string>

namespace omni::testing {

struct DiffStats {
  double max_abs = 0, mean_abs = 0, max_rel = 0;
  int64_t worst = -1;      // flat index of the largest |a - e| (or of the worst allclose violation)
  int64_t violations = 0;  // elements with |a - e| > atol + rtol * |e|
  double got = 0, want = 0;
};

inline DiffStats diff_stats(const torch::Tensor& actual, const torch::Tensor& expected, double atol = 0,
                            double rtol = 0) {
  auto a = actual.detach().to(torch::kCPU).to(torch::kFloat64).reshape({-1});
  auto e = expected.detach().to(torch::kCPU).to(torch::kFloat64).reshape({-1});
  DiffStats s;
  if (a.numel() == 0) return s;
  auto d = (a - e).abs();
  s.max_abs = d.max().item<double>();
  s.mean_abs = d.mean().item<double>();
  s.max_rel = (d / e.abs().clamp_min(1e-12)).max().item<double>();
  auto excess = d - (atol + rtol * e.abs());
  s.violations = (excess > 0).sum().item<int64_t>();
  s.worst = (s.violations > 0 ? excess : d).argmax().item<int64_t>();
  s.got = a[s.worst].item<double>();
  s.want = e[s.worst].item<double>();
  return s;
}

inline std::string fmt_g(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.3g", v);
  return buf;
}

inline void print_stats(const std::string& name, const DiffStats& s, const std::string& tol) {
  std::cout << "[align] " << name << " max_abs=" << fmt_g(s.max_abs) << " mean_abs=" << fmt_g(s.mean_abs)
            << " max_rel=" << fmt_g(s.max_rel) << " worst@" << s.worst << " (got " << s.got << ", want " << s.want
            << ")  [" << tol << "]" << std::endl;
}

// torch.allclose semantics: |a - e| <= atol + rtol * |e| everywhere; shapes must match.
inline DiffStats expect_close(const std::string& name, const torch::Tensor& actual, const torch::Tensor& expected,
                              double atol, double rtol = 0) {
  EXPECT_EQ(actual.sizes().vec(), expected.sizes().vec()) << name << ": shape";
  if (actual.sizes() != expected.sizes()) return {};
  auto s = diff_stats(actual, expected, atol, rtol);
  print_stats(name, s, "atol " + fmt_g(atol) + " rtol " + fmt_g(rtol));
  EXPECT_EQ(s.violations, 0) << name << ": " << s.violations << " elements outside atol " << atol << " rtol " << rtol
                             << "; worst at " << s.worst << " got " << s.got << " want " << s.want;
  return s;
}

// Max and mean absolute error bounds (e.g. decoded images: max <= 1e-3, mean <= 1e-5).
inline DiffStats expect_close_mean(const std::string& name, const torch::Tensor& actual,
                                   const torch::Tensor& expected, double max_abs, double mean_abs) {
  EXPECT_EQ(actual.sizes().vec(), expected.sizes().vec()) << name << ": shape";
  if (actual.sizes() != expected.sizes()) return {};
  auto s = diff_stats(actual, expected);
  print_stats(name, s, "max " + fmt_g(max_abs) + " mean " + fmt_g(mean_abs));
  EXPECT_LE(s.max_abs, max_abs) << name;
  EXPECT_LE(s.mean_abs, mean_abs) << name;
  return s;
}

// Integer tensors equal, optionally only where `allowed_mismatch` (bool, same shape) is false.
// Returns the number of mismatches counted against the check.
inline int64_t expect_equal_ints(const std::string& name, const torch::Tensor& actual, const torch::Tensor& expected,
                                 const torch::Tensor& allowed_mismatch = {}) {
  EXPECT_EQ(actual.sizes().vec(), expected.sizes().vec()) << name << ": shape";
  if (actual.sizes() != expected.sizes()) return -1;
  auto a = actual.detach().to(torch::kCPU).to(torch::kInt64).reshape({-1});
  auto e = expected.detach().to(torch::kCPU).to(torch::kInt64).reshape({-1});
  auto ne = a != e;
  const int64_t all = ne.sum().item<int64_t>();
  int64_t counted = all;
  if (allowed_mismatch.defined()) counted = (ne & ~allowed_mismatch.to(torch::kCPU).to(torch::kBool).reshape({-1})).sum().item<int64_t>();
  int64_t first = -1;
  if (counted > 0) {
    auto bad = allowed_mismatch.defined() ? (ne & ~allowed_mismatch.to(torch::kCPU).to(torch::kBool).reshape({-1})) : ne;
    first = bad.nonzero().index({0, 0}).item<int64_t>();
  }
  std::cout << "[align] " << name << " mismatches=" << all << "/" << a.numel() << " (counted " << counted << ")";
  if (first >= 0) std::cout << " first@" << first << " got " << a[first].item<int64_t>() << " want " << e[first].item<int64_t>();
  std::cout << std::endl;
  EXPECT_EQ(counted, 0) << name << ": first mismatch at " << first;
  return counted;
}

}  // namespace omni::testing
