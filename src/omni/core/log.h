// Levelled logging to stderr. Level from OMNI_LOG (debug|info|warn|error) or set_log_level().
#pragma once
#include <sstream>
#include <string>

namespace omni {

enum class LogLevel { Debug = 0, Info = 1, Warn = 2, Error = 3, Off = 4 };

void set_log_level(LogLevel level);
LogLevel log_level();
LogLevel parse_log_level(const std::string& name);  // throws omni::Error on unknown names
void log_message(LogLevel level, const std::string& message);

namespace detail {
inline void append(std::ostringstream&) {}
template <typename T, typename... Rest>
void append(std::ostringstream& os, const T& v, const Rest&... rest) {
  os << v;
  append(os, rest...);
}
}  // namespace detail

template <typename... Args>
void log(LogLevel level, const Args&... args) {
  if (level < log_level()) return;
  std::ostringstream os;
  detail::append(os, args...);
  log_message(level, os.str());
}
template <typename... Args> void log_debug(const Args&... a) { log(LogLevel::Debug, a...); }
template <typename... Args> void log_info(const Args&... a) { log(LogLevel::Info, a...); }
template <typename... Args> void log_warn(const Args&... a) { log(LogLevel::Warn, a...); }
template <typename... Args> void log_error(const Args&... a) { log(LogLevel::Error, a...); }

}  // namespace omni
