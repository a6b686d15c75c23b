#include "omni/generate/sampler.h"

#include <torch/torch.h>

#include <limits>

#include "omni/core/error.h"

namespace omni::generate {

using torch::indexing::None;
using torch::indexing::Slice;

at::Tensor sample_next(const at::Tensor& logits, const SamplerOptions& o, at::Generator* gen) {
  if (o.greedy()) return logits.argmax(-1);
  check(gen != nullptr, "sampler", "sampling needs a generator (greedy decoding does not)");
  auto scores = logits / o.temperature;
  const float neg_inf = -std::numeric_limits<float>::infinity();
  if (o.top_k > 0) {
    const int64_t k = std::min<int64_t>(o.top_k, scores.size(-1));
    auto kth = std::get<0>(torch::topk(scores, k)).index({"...", Slice(-1, None)});
    scores = scores.masked_fill(scores < kth, neg_inf);
  }
  if (o.top_p < 1.0) {
    auto sorted = torch::sort(scores, -1, /*descending=*/false);
    auto sorted_logits = std::get<0>(sorted), sorted_idx = std::get<1>(sorted);
    auto cum = sorted_logits.softmax(-1).cumsum(-1);
    auto remove = cum <= (1.0 - o.top_p);
    remove.index_put_({"...", Slice(-1, None)}, false);  // min_tokens_to_keep = 1
    scores = scores.masked_fill(remove.scatter(-1, sorted_idx, remove), neg_inf);
  }
  return torch::multinomial(torch::softmax(scores, -1), 1, /*replacement=*/false, *gen).squeeze(-1);
}

}  // namespace omni::generate
