#include "omni/core/log.h"

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <mutex>

#include "omni/core/error.h"

namespace omni {
namespace {

LogLevel initial_level() {
  const char* env = std::getenv("OMNI_LOG");
  if (!env || !*env) return LogLevel::Info;
  try {
    return parse_log_level(env);
  } catch (const Error&) {
    return LogLevel::Info;
  }
}

std::atomic<int>& level_storage() {
  static std::atomic<int> level{static_cast<int>(initial_level())};
  return level;
}

}  // namespace

void set_log_level(LogLevel level) { level_storage() = static_cast<int>(level); }
LogLevel log_level() { return static_cast<LogLevel>(level_storage().load()); }

LogLevel parse_log_level(const std::string& name) {
  if (name == "debug") return LogLevel::Debug;
  if (name == "info") return LogLevel::Info;
  if (name == "warn" || name == "warning") return LogLevel::Warn;
  if (name == "error") return LogLevel::Error;
  if (name == "off" || name == "quiet") return LogLevel::Off;
  throw Error("log level '" + name + "'", "expected one of debug, info, warn, error, off");
}

void log_message(LogLevel level, const std::string& message) {
  static std::mutex mu;
  static const char* tags[] = {"debug", "info", "warn", "error", ""};
  std::lock_guard<std::mutex> lock(mu);
  std::fprintf(stderr, "[%s] %s\n", tags[static_cast<int>(level)], message.c_str());
  std::fflush(stderr);
}

}  // namespace omni
