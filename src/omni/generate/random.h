// Random generators owned by a request or a training run (never libtorch's global one), so two
// requests in one process do not interfere and a run can be replayed from its seed.
#pragma once
#include <ATen/core/Generator.h>
#include <c10/core/Device.h>

#include <cstdint>
#include <optional>

namespace omni::generate {

// A fresh generator for `device` seeded like torch.manual_seed(seed) seeds that device's default
// generator: the same draws in the same order give the same numbers as the official scripts.
at::Generator make_generator(c10::Device device, uint64_t seed);

// One float64 draw in [0, 1) from `gen` (what Python's random.random() decides in data code).
double uniform01(at::Generator& gen);

// A seed from std::random_device (for runs without --seed; callers log it so it can be replayed).
uint64_t fresh_seed();

// `seed` when given, otherwise a fresh seed that is logged ("seed N (pass --seed to reproduce)").
uint64_t seed_or_fresh(const std::optional<uint64_t>& seed);

}  // namespace omni::generate
