#include "omni/generate/random.h"

#include <ATen/CPUGeneratorImpl.h>
#include <ATen/Context.h>
#include <ATen/Functions.h>

#include <random>

#include "omni/core/log.h"

namespace omni::generate {

at::Generator make_generator(c10::Device device, uint64_t seed) {
  at::Generator g = device.is_cpu() ? at::make_generator<at::CPUGeneratorImpl>(seed)
                                    : at::globalContext().defaultGenerator(device).clone();
  // set_current_seed also clears the cached normal draws, exactly as manual_seed does.
  g.set_current_seed(seed);
  return g;
}

double uniform01(at::Generator& gen) {
  return at::empty({1}, at::TensorOptions().dtype(at::kDouble)).uniform_(0, 1, gen).item<double>();
}

uint64_t fresh_seed() {
  std::random_device rd;
  return (static_cast<uint64_t>(rd()) << 32) ^ rd();
}

uint64_t seed_or_fresh(const std::optional<uint64_t>& seed) {
  if (seed) return *seed;
  const uint64_t s = fresh_seed();
  log_info("seed ", s, " (pass --seed to reproduce)");
  return s;
}

}  // namespace omni::generate
