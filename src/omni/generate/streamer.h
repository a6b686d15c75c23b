// Streams generated text as tokens arrive: after each token the decoded text is compared with
// what was already emitted and only the new tail is passed on, held back while a UTF-8 sequence
// is still incomplete (the decode ends in U+FFFD). torch-free.
#pragma once
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

namespace omni::generate {

class TextStreamer {
 public:
  using Decode = std::function<std::string(const std::vector<int64_t>&)>;
  using Emit = std::function<void(const std::string& piece)>;
  TextStreamer(Decode decode, Emit emit) : decode_(std::move(decode)), emit_(std::move(emit)) {}

  void put(int64_t token);
  // Emits whatever is left (also an incomplete UTF-8 tail, as its replacement character).
  void finish();
  const std::vector<int64_t>& tokens() const { return tokens_; }
  std::string text() const { return decode_(tokens_); }

 private:
  void flush(bool final);
  Decode decode_;
  Emit emit_;
  std::vector<int64_t> tokens_;
  std::string printed_;
};

}  // namespace omni::generate
