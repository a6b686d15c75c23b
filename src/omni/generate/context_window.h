// The one rule every family keeps about its model's positions (max_position_embeddings): RoPE has
// no hard end, but past the trained positions an answer is noise, and a very long prompt's prefill
// asks for memory it may not get (a 72k-token Janus prompt asked for a 21 GB score matrix). So a
// prompt must fit inside the context, with room for at least one answer token, and an answer
// stops at the context's end.
#pragma once
#include <algorithm>
#include <cstdint>
#include <string>

#include "omni/core/error.h"

namespace omni::generate {

// Throws "--prompt: the prompt is <used> <counted>, the model's context is <context>
// (max_position_embeddings)" unless used < context. `counted` says what the count includes
// ("tokens with the image slots").
inline void check_prompt_fits(int64_t used, int64_t context, const std::string& counted) {
  if (used >= context)
    throw Error("--prompt", "the prompt is " + std::to_string(used) + " " + counted + ", the model's context is " +
                                std::to_string(context) + " (max_position_embeddings)");
}

// How many of `asked` new tokens fit after `used` positions: never past the context, never < 0.
inline int64_t answer_room(int64_t used, int64_t context, int64_t asked) {
  return std::max<int64_t>(0, std::min(asked, context - used));
}

}  // namespace omni::generate
