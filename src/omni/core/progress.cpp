#include "omni/core/progress.h"

#include <sys/resource.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>

#include "omni/core/log.h"

namespace omni {
namespace {
std::atomic<int> g_tty_mode{-1};
double since(std::chrono::steady_clock::time_point t) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t).count();
}
}  // namespace

void Progress::set_tty_mode(int mode) { g_tty_mode = mode; }

Progress::Progress(std::string label, int64_t total, std::string unit)
    : label_(std::move(label)), unit_(std::move(unit)), total_(total) {
  int mode = g_tty_mode.load();
  tty_ = mode < 0 ? isatty(fileno(stderr)) != 0 : mode == 1;
  start_ = last_draw_ = std::chrono::steady_clock::now();
}

Progress::~Progress() {
  if (!finished_) finish();
}

std::string Progress::format_duration(double s) {
  if (!(s >= 0) || s > 1e7) return "?";
  long t = static_cast<long>(s + 0.5);
  char buf[32];
  if (t >= 3600)
    std::snprintf(buf, sizeof buf, "%ld:%02ld:%02ld", t / 3600, (t / 60) % 60, t % 60);
  else
    std::snprintf(buf, sizeof buf, "%ld:%02ld", t / 60, t % 60);
  return buf;
}

std::string Progress::status_line() const {
  const double el = since(start_);
  const double rate = el > 0 ? done_ / el : 0.0;
  char buf[256];
  if (total_ > 0) {
    const double eta = rate > 0 ? (total_ - done_) / rate : -1;
    std::snprintf(buf, sizeof buf, "%s: %lld/%lld %s (%.0f%%) %.2f %s/s elapsed %s ETA %s", label_.c_str(),
                  static_cast<long long>(done_), static_cast<long long>(total_), unit_.c_str(),
                  100.0 * done_ / total_, rate, unit_.c_str(), format_duration(el).c_str(),
                  format_duration(eta).c_str());
  } else {
    std::snprintf(buf, sizeof buf, "%s: %lld %s %.2f %s/s elapsed %s", label_.c_str(),
                  static_cast<long long>(done_), unit_.c_str(), rate, unit_.c_str(), format_duration(el).c_str());
  }
  return note_.empty() ? std::string(buf) : std::string(buf) + " " + note_;
}

void Progress::tick(int64_t n) {
  done_ += n;
  draw(false);
}

void Progress::finish() {
  if (finished_) return;
  finished_ = true;
  draw(true);
}

void Progress::draw(bool final) {
  if (log_level() > LogLevel::Info) return;
  if (tty_) {
    if (!final && since(last_draw_) < 0.1) return;
    last_draw_ = std::chrono::steady_clock::now();
    std::string bar;
    if (total_ > 0) {
      const int width = 24;
      int filled = static_cast<int>(width * static_cast<double>(done_) / total_);
      if (filled > width) filled = width;
      bar = "[" + std::string(filled, '#') + std::string(width - filled, '.') + "] ";
    }
    std::fprintf(stderr, "\r\033[K%s%s%s", bar.c_str(), status_line().c_str(), final ? "\n" : "");
    std::fflush(stderr);
    return;
  }
  // Plain mode: a line at every 10% (or every 5 s for long steps), and at the end.
  int percent = total_ > 0 ? static_cast<int>(10.0 * done_ / total_) : -1;
  bool due = final || since(last_draw_) >= 5.0 || (total_ > 0 && percent != last_percent_line_);
  if (!due || done_ == last_line_done_) return;  // never the same line twice
  last_line_done_ = done_;
  last_percent_line_ = percent;
  last_draw_ = std::chrono::steady_clock::now();
  std::fprintf(stderr, "%s\n", status_line().c_str());
  std::fflush(stderr);
}

StageTimer::StageTimer(std::string stage, bool log_on_exit)
    : stage_(std::move(stage)), log_(log_on_exit), start_(std::chrono::steady_clock::now()) {}
StageTimer::~StageTimer() {
  if (!log_) return;
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.3f s", seconds());
  log_info(stage_, ": ", buf);
}
double StageTimer::seconds() const { return since(start_); }

uint64_t peak_rss_bytes() {
  struct rusage ru {};
  getrusage(RUSAGE_SELF, &ru);
  return static_cast<uint64_t>(ru.ru_maxrss) * 1024;  // Linux reports KiB
}

uint64_t rss_bytes() {
  std::FILE* f = std::fopen("/proc/self/statm", "r");
  if (!f) return 0;
  unsigned long long size = 0, resident = 0;
  const int n = std::fscanf(f, "%llu %llu", &size, &resident);
  std::fclose(f);
  return n == 2 ? resident * static_cast<uint64_t>(sysconf(_SC_PAGESIZE)) : 0;
}

std::string format_bytes(uint64_t b) {
  char buf[64];
  const double v = static_cast<double>(b);
  if (b >= (1ull << 30)) std::snprintf(buf, sizeof buf, "%.2f GiB", v / (1ull << 30));
  else if (b >= (1ull << 20)) std::snprintf(buf, sizeof buf, "%.2f MiB", v / (1ull << 20));
  else if (b >= 1024) std::snprintf(buf, sizeof buf, "%.2f KiB", v / 1024);
  else std::snprintf(buf, sizeof buf, "%llu B", static_cast<unsigned long long>(b));
  return buf;
}

}  // namespace omni
