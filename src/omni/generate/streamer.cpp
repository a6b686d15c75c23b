#include "omni/generate/streamer.h"

namespace omni::generate {

void TextStreamer::put(int64_t token) {
  tokens_.push_back(token);
  flush(false);
}

void TextStreamer::finish() { flush(true); }

void TextStreamer::flush(bool final) {
  const std::string text = decode_(tokens_);
  const bool partial = text.size() >= 3 && text.compare(text.size() - 3, 3, "\xEF\xBF\xBD") == 0;
  // Only a text that extends what was printed can be streamed (a decode may rewrite its tail).
  if ((final || !partial) && text.size() > printed_.size() && text.compare(0, printed_.size(), printed_) == 0) {
    emit_(text.substr(printed_.size()));
    printed_ = text;
  }
}

}  // namespace omni::generate
