// Next-token choice from logits, the one sampler every family uses. Greedy is the argmax of the
// raw logits; sampling follows Hugging Face generate(do_sample=True): logits / temperature, top-k,
// top-p (min_tokens_to_keep 1), softmax, torch.multinomial — each step removable, so a family's
// official rule is a setting (BAGEL: temperature only; Janus: HF defaults with top_k 50).
#pragma once
#include <ATen/core/Generator.h>
#include <ATen/core/Tensor.h>

#include <cstdint>

namespace omni::generate {

struct SamplerOptions {
  double temperature = 0.0;  // <= 0: greedy
  int64_t top_k = 0;         // 0: off
  double top_p = 1.0;        // 1: off
  bool greedy() const { return temperature <= 0; }
};

// logits [B, V] -> ids [B] (int64). Greedy needs no generator; sampling draws from `gen` only
// (omni::Error when it is null).
at::Tensor sample_next(const at::Tensor& logits, const SamplerOptions& o, at::Generator* gen);

}  // namespace omni::generate
