// Decoders: ByteLevel, Replace, ByteFallback, Fuse, Strip, Metaspace, BPEDecoder, Sequence.
// Each works on the list of token strings, as HF's decode_chain does; the results are joined.
#include "omni/core/error.h"
#include "omni/text/tokenizer_internal.h"

namespace omni::text::detail {

namespace {

class ByteLevelDecoder : public Decoder {
 public:
  void decode_chain(std::vector<std::string>& tokens) const override {
    std::string bytes;
    for (const auto& t : tokens) {
      size_t start = bytes.size();
      bool ok = true;
      for (size_t i = 0; i < t.size();) {
        size_t len;
        int b = char_to_byte(utf8_decode(t, i, &len));
        if (b < 0) {
          ok = false;
          break;
        }
        bytes.push_back(static_cast<char>(b));
        i += len;
      }
      if (!ok) {  // a token outside the byte alphabet (e.g. an added token) keeps its own bytes
        bytes.resize(start);
        bytes += t;
      }
    }
    tokens.assign(1, utf8_lossy(bytes));
  }
};

class ReplaceDecoder : public Decoder {
 public:
  ReplaceDecoder(std::shared_ptr<Regex> re, std::string content) : re_(std::move(re)), content_(std::move(content)) {}
  void decode_chain(std::vector<std::string>& tokens) const override {
    for (auto& t : tokens) t = re_->replace_all(t, content_);
  }

 private:
  std::shared_ptr<Regex> re_;
  std::string content_;
};

int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

class ByteFallbackDecoder : public Decoder {
 public:
  void decode_chain(std::vector<std::string>& tokens) const override {
    std::vector<std::string> out;
    std::string pending;
    auto flush = [&] {
      if (pending.empty()) return;
      if (utf8_valid(pending)) {
        out.push_back(pending);
      } else {
        for (size_t i = 0; i < pending.size(); ++i) out.emplace_back("\xEF\xBF\xBD");
      }
      pending.clear();
    };
    for (auto& t : tokens) {
      int byte = -1;
      if (t.size() == 6 && t.compare(0, 3, "<0x") == 0 && t[5] == '>') {
        int hi = hex_value(t[3]), lo = hex_value(t[4]);
        if (hi >= 0 && lo >= 0) byte = hi * 16 + lo;
      }
      if (byte >= 0) {
        pending.push_back(static_cast<char>(byte));
      } else {
        flush();
        out.push_back(std::move(t));
      }
    }
    flush();
    tokens.swap(out);
  }
};

class FuseDecoder : public Decoder {
 public:
  void decode_chain(std::vector<std::string>& tokens) const override {
    std::string all;
    for (const auto& t : tokens) all += t;
    tokens.assign(1, all);
  }
};

class StripDecoder : public Decoder {
 public:
  StripDecoder(char32_t content, size_t start, size_t stop) : content_(content), start_(start), stop_(stop) {}
  void decode_chain(std::vector<std::string>& tokens) const override {
    for (auto& t : tokens) {
      std::vector<std::pair<size_t, char32_t>> chars;  // (byte offset, code point)
      for (size_t i = 0; i < t.size();) {
        size_t len;
        chars.emplace_back(i, utf8_decode(t, i, &len));
        i += len;
      }
      size_t n = chars.size();
      size_t start_cut = 0;
      for (size_t i = 0; i < n && i < start_; ++i) {
        if (chars[i].second != content_) break;
        start_cut = i + 1;
      }
      size_t stop_cut = n;
      for (size_t i = 0; i < n && i < stop_; ++i) {
        size_t k = n - 1 - i;
        if (chars[k].second != content_) break;
        stop_cut = k;
      }
      if (stop_cut < start_cut) stop_cut = start_cut;
      size_t b = start_cut < n ? chars[start_cut].first : t.size();
      size_t e = stop_cut < n ? chars[stop_cut].first : t.size();
      t = t.substr(b, e - b);
    }
  }

 private:
  char32_t content_;
  size_t start_, stop_;
};

class MetaspaceDecoder : public Decoder {
 public:
  MetaspaceDecoder(char32_t replacement, bool strip_first) : strip_first_(strip_first) {
    utf8_append(rep_, replacement);
  }
  void decode_chain(std::vector<std::string>& tokens) const override {
    for (size_t i = 0; i < tokens.size(); ++i) {
      std::string& t = tokens[i];
      std::string out;
      size_t p = 0;
      while (true) {
        size_t f = t.find(rep_, p);
        if (f == std::string::npos) break;
        out.append(t, p, f - p);
        if (!(i == 0 && strip_first_)) out += ' ';
        p = f + rep_.size();
      }
      out.append(t, p, std::string::npos);
      t.swap(out);
    }
  }

 private:
  std::string rep_;
  bool strip_first_;
};

class BpeSuffixDecoder : public Decoder {
 public:
  explicit BpeSuffixDecoder(std::string suffix) : suffix_(std::move(suffix)) {}
  void decode_chain(std::vector<std::string>& tokens) const override {
    if (suffix_.empty()) return;
    for (size_t i = 0; i < tokens.size(); ++i) {
      const char* rep = i + 1 == tokens.size() ? "" : " ";
      std::string& t = tokens[i];
      std::string out;
      size_t p = 0;
      while (true) {
        size_t f = t.find(suffix_, p);
        if (f == std::string::npos) break;
        out.append(t, p, f - p);
        out += rep;
        p = f + suffix_.size();
      }
      out.append(t, p, std::string::npos);
      t.swap(out);
    }
  }

 private:
  std::string suffix_;
};

class SequenceDecoder : public Decoder {
 public:
  explicit SequenceDecoder(std::vector<std::unique_ptr<Decoder>> parts) : parts_(std::move(parts)) {}
  void decode_chain(std::vector<std::string>& tokens) const override {
    for (const auto& p : parts_) p->decode_chain(tokens);
  }

 private:
  std::vector<std::unique_ptr<Decoder>> parts_;
};

char32_t single_char(const std::string& s, const std::string& src, const char* what) {
  size_t len = 0;
  if (s.empty() || !utf8_valid(s) || (utf8_decode(s, 0, &len), len != s.size()))
    throw Error(src, std::string(what) + " must be one character, got \"" + s + "\"");
  return utf8_decode(s, 0, &len);
}

}  // namespace

std::unique_ptr<Decoder> make_decoder(const json& j, const std::string& src) {
  if (j.is_null()) return nullptr;
  std::string type = component_type(j, src, "decoder");
  if (type == "ByteLevel") return std::make_unique<ByteLevelDecoder>();
  if (type == "Replace") {
    return std::make_unique<ReplaceDecoder>(json_pattern(j.at("pattern"), src, "decoder Replace"),
                                            j.at("content").get<std::string>());
  }
  if (type == "ByteFallback") return std::make_unique<ByteFallbackDecoder>();
  if (type == "Fuse") return std::make_unique<FuseDecoder>();
  if (type == "Strip") {
    return std::make_unique<StripDecoder>(single_char(j.at("content").get<std::string>(), src, "decoder Strip content"),
                                          j.value("start", size_t{0}), j.value("stop", size_t{0}));
  }
  if (type == "Metaspace") {
    char32_t rep = single_char(json_string(j, "replacement", "\xE2\x96\x81"), src, "decoder Metaspace replacement");
    bool strip_first = true;
    if (j.contains("prepend_scheme") && j["prepend_scheme"].is_string()) {
      strip_first = j["prepend_scheme"].get<std::string>() != "never";
    } else {
      strip_first = json_bool(j, "add_prefix_space", true);
    }
    return std::make_unique<MetaspaceDecoder>(rep, strip_first);
  }
  if (type == "BPEDecoder") return std::make_unique<BpeSuffixDecoder>(json_string(j, "suffix", "</w>"));
  if (type == "Sequence") {
    if (!j.contains("decoders") || !j["decoders"].is_array())
      throw Error(src, "decoder Sequence: expected a \"decoders\" array");
    std::vector<std::unique_ptr<Decoder>> parts;
    for (const auto& d : j["decoders"]) {
      auto p = make_decoder(d, src);
      if (p) parts.push_back(std::move(p));
    }
    return std::make_unique<SequenceDecoder>(std::move(parts));
  }
  unknown_type(src, "decoder", type);
}

}  // namespace omni::text::detail
