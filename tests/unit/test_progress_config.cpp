// Progress formatting/plain-mode output, stage timers, RSS, and HF config access.
#include <gtest/gtest.h>

#include <cstdio>
#include <filesystem>
#include <fstream>

#include "omni/core/error.h"
#include "omni/core/progress.h"
#include "omni/io/hf_config.h"

using namespace omni;

TEST(Progress, FormatDuration) {
  EXPECT_EQ(Progress::format_duration(0), "0:00");
  EXPECT_EQ(Progress::format_duration(65), "1:05");
  EXPECT_EQ(Progress::format_duration(3723), "1:02:03");
  EXPECT_EQ(Progress::format_duration(-1), "?");
}

TEST(Progress, PlainModeWritesPeriodicLinesWithRateAndEta) {
  Progress::set_tty_mode(0);
  testing::internal::CaptureStderr();
  {
    Progress p("decode", 20, "tok");
    for (int i = 0; i < 20; ++i) p.tick();
    p.finish();
  }
  std::string err = testing::internal::GetCapturedStderr();
  Progress::set_tty_mode(-1);
  // One line per 10% step plus the final line; never a carriage return in plain mode.
  EXPECT_EQ(err.find('\r'), std::string::npos);
  const auto lines = std::count(err.begin(), err.end(), '\n');
  EXPECT_GE(lines, 10);
  EXPECT_LE(lines, 12);
  EXPECT_NE(err.find("decode: 20/20 tok (100%)"), std::string::npos) << err;
  EXPECT_NE(err.find("tok/s"), std::string::npos);
  EXPECT_NE(err.find("ETA"), std::string::npos);
}

TEST(Progress, TtyModeRedrawsOneLine) {
  Progress::set_tty_mode(1);
  testing::internal::CaptureStderr();
  {
    Progress p("steps", 4);
    for (int i = 0; i < 4; ++i) p.tick();
  }  // destructor finishes
  std::string err = testing::internal::GetCapturedStderr();
  Progress::set_tty_mode(-1);
  EXPECT_NE(err.find('\r'), std::string::npos);
  EXPECT_NE(err.find("[########################]"), std::string::npos) << err;
  EXPECT_EQ(std::count(err.begin(), err.end(), '\n'), 1);
}

TEST(Progress, RssAndBytes) {
  EXPECT_GT(peak_rss_bytes(), 1u << 20);
  EXPECT_EQ(format_bytes(512), "512 B");
  EXPECT_EQ(format_bytes(3u << 20), "3.00 MiB");
  StageTimer t("x", false);
  EXPECT_GE(t.seconds(), 0.0);
}

TEST(HfConfig, TypedAccessDefaultsAndErrors) {
  auto c = io::HfConfig::from_string(
      R"({"model_type":"multi_modality","language_config":{"hidden_size":64,"rms_norm_eps":null},"n":"x"})", "cfg.json");
  EXPECT_EQ(c.get<std::string>("model_type"), "multi_modality");
  auto lm = c.sub("language_config");
  EXPECT_EQ(lm.get<int>("hidden_size"), 64);
  EXPECT_DOUBLE_EQ(lm.get_or<double>("rms_norm_eps", 1e-6), 1e-6);  // null counts as absent
  EXPECT_EQ(lm.get_or<int>("num_key_value_heads", 7), 7);
  try {
    lm.get<int>("vocab_size");
    FAIL();
  } catch (const Error& e) {
    EXPECT_STREQ(e.what(), "cfg.json: language_config.vocab_size: missing required key");
  }
  try {
    c.get<int>("n");
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("cfg.json: n: has the wrong type"), std::string::npos) << e.what();
  }
  EXPECT_THROW(c.sub("vision_config"), Error);
  EXPECT_FALSE(c.sub_or_empty("vision_config").has("x"));
  EXPECT_THROW(io::HfConfig::from_string("{", "bad.json"), Error);
  EXPECT_THROW(io::HfConfig::from_string("[1]", "arr.json"), Error);
  EXPECT_THROW(io::HfConfig::from_file("/nonexistent/config.json"), Error);
}
