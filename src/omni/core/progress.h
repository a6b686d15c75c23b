// Progress for long loops: a redrawn bar with it/s and ETA on a TTY, plain periodic lines
// otherwise (logs and CI stay readable). Writes to stderr so stdout stays clean for results.
#pragma once
#include <chrono>
#include <cstdint>
#include <string>

namespace omni {

class Progress {
 public:
  // total <= 0: unknown length (shows count and rate only).
  Progress(std::string label, int64_t total, std::string unit = "it");
  ~Progress();  // finishes the line if finish() was not called
  void tick(int64_t n = 1);
  void finish();
  // Text shown after the counts (e.g. "loss 1.23"), kept until replaced.
  void set_note(std::string note) { note_ = std::move(note); }
  bool is_tty() const { return tty_; }

  // Forced mode for tests and pipes: -1 auto (isatty), 0 plain lines, 1 bar.
  static void set_tty_mode(int mode);
  // Formatting, exposed for tests.
  static std::string format_duration(double seconds);  // "1:05", "1:02:03", "?"
  std::string status_line() const;

 private:
  void draw(bool final);
  std::string label_, unit_, note_;
  int64_t total_, done_ = 0;
  bool tty_, finished_ = false;
  std::chrono::steady_clock::time_point start_, last_draw_;
  int last_percent_line_ = -1;
  int64_t last_line_done_ = -1;  // plain mode: the count the last line showed
};

// Wall-clock stage timer: logs "<stage>: 1.23 s" at info level when it goes out of scope.
class StageTimer {
 public:
  explicit StageTimer(std::string stage, bool log_on_exit = true);
  ~StageTimer();
  double seconds() const;

 private:
  std::string stage_;
  bool log_;
  std::chrono::steady_clock::time_point start_;
};

// Peak resident set size of this process in bytes (getrusage).
uint64_t peak_rss_bytes();
// Resident set size now, in bytes (/proc/self/statm; 0 where it cannot be read).
uint64_t rss_bytes();
std::string format_bytes(uint64_t bytes);  // "1.50 GiB"

}  // namespace omni
