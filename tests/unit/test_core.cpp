#include <gtest/gtest.h>

#include "omni/core/error.h"
#include "omni/core/log.h"
#include "omni/io/dtype.h"

using namespace omni;

TEST(Error, MessageIsWhatColonWhy) {
  Error e("model.safetensors", "header length 99 exceeds file size 12");
  EXPECT_STREQ(e.what(), "model.safetensors: header length 99 exceeds file size 12");
  EXPECT_EQ(e.subject(), "model.safetensors");
  EXPECT_EQ(e.with_context("loading x").what(),
            std::string("loading x: model.safetensors: header length 99 exceeds file size 12"));
}

TEST(Error, CheckThrowsOnlyWhenFalse) {
  EXPECT_NO_THROW(check(true, "a", "b"));
  EXPECT_THROW(check(false, "a", "b"), Error);
}

TEST(Log, ParseLevels) {
  EXPECT_EQ(parse_log_level("debug"), LogLevel::Debug);
  EXPECT_EQ(parse_log_level("warning"), LogLevel::Warn);
  try {
    parse_log_level("loud");
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("expected one of"), std::string::npos);
  }
}

TEST(DType, NamesSizesRoundTrip) {
  EXPECT_EQ(parse_dtype("BF16", "t"), DType::BF16);
  EXPECT_EQ(dtype_size(DType::BF16), 2u);
  EXPECT_EQ(dtype_size(DType::F64), 8u);
  EXPECT_STREQ(dtype_name(DType::BOOL), "BOOL");
  EXPECT_THROW(parse_dtype("F8_E4M3", "t"), Error);
  EXPECT_EQ(shape_str({2, 3}), "[2, 3]");
  EXPECT_EQ(numel_of({}), 1);
}
