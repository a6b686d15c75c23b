// The context rule every family keeps (generate/context_window.h): a prompt must leave room for
// one answer token, and an answer stops at the context's end.
#include <gtest/gtest.h>

#include "omni/generate/context_window.h"

namespace omni::generate {

TEST(ContextWindow, APromptMustLeaveRoomForOneAnswerToken) {
  EXPECT_NO_THROW(check_prompt_fits(47, 48, "tokens"));
  try {
    check_prompt_fits(48, 48, "tokens with the image slots");
    FAIL() << "a prompt as long as the context was accepted";
  } catch (const Error& e) {
    EXPECT_EQ(e.subject(), "--prompt");
    EXPECT_STREQ(e.what(),
                 "--prompt: the prompt is 48 tokens with the image slots, the model's context is 48 "
                 "(max_position_embeddings)");
  }
  EXPECT_THROW(check_prompt_fits(72000, 16384, "tokens"), Error);
}

TEST(ContextWindow, TheAnswerStopsAtTheContextsEnd) {
  EXPECT_EQ(answer_room(10, 48, 512), 38);  // asked past the end: what is left
  EXPECT_EQ(answer_room(10, 48, 5), 5);     // asked less: what was asked
  EXPECT_EQ(answer_room(47, 48, 5), 1);
  EXPECT_EQ(answer_room(48, 48, 5), 0);     // nothing left (never negative)
  EXPECT_EQ(answer_room(60, 48, 5), 0);
}

}  // namespace omni::generate
