// One error type for the whole engine. The message is "<what>: <why>", where <what> names the
// thing (a file, a tensor, a flag) and <why> says what was expected. The CLI prints
// "error: <message>" and exits non-zero.
#pragma once
#include <stdexcept>
#include <string>

namespace omni {

class Error : public std::runtime_error {
 public:
  Error(const std::string& what, const std::string& why)
      : std::runtime_error(what.empty() ? why : what + ": " + why), what_(what), why_(why) {}
  explicit Error(const std::string& message) : std::runtime_error(message), why_(message) {}

  const std::string& subject() const { return what_; }
  const std::string& reason() const { return why_; }

  // Returns a copy with more context in front: "outer: inner message".
  Error with_context(const std::string& outer) const { return Error(outer, what()); }

 private:
  std::string what_;
  std::string why_;
};

// Throws omni::Error(what, why) when cond is false.
inline void check(bool cond, const std::string& what, const std::string& why) {
  if (!cond) throw Error(what, why);
}

}  // namespace omni
