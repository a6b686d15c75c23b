// Normalizers: NFC/NFD/NFKC/NFKD, Sequence, Prepend, Replace, Strip.
#include <utf8proc.h>

#include <cstdlib>

#include "omni/core/error.h"
#include "omni/text/tokenizer_internal.h"

namespace omni::text::detail {

namespace {

bool is_ascii(const std::string& s) {
  for (unsigned char c : s)
    if (c >= 0x80) return false;
  return true;
}

class UnicodeForm : public Normalizer {
 public:
  UnicodeForm(int options, std::string name) : options_(options), name_(std::move(name)) {}
  void normalize(std::string& s) const override {
    if (is_ascii(s)) return;  // ASCII is invariant under every normalization form
    utf8proc_uint8_t* dst = nullptr;
    utf8proc_ssize_t len = utf8proc_map(reinterpret_cast<const utf8proc_uint8_t*>(s.data()),
                                        static_cast<utf8proc_ssize_t>(s.size()), &dst,
                                        static_cast<utf8proc_option_t>(options_));
    if (len < 0) throw Error("normalizer " + name_, utf8proc_errmsg(len));
    s.assign(reinterpret_cast<const char*>(dst), static_cast<size_t>(len));
    std::free(dst);
  }

 private:
  int options_;
  std::string name_;
};

class SequenceNormalizer : public Normalizer {
 public:
  explicit SequenceNormalizer(std::vector<std::unique_ptr<Normalizer>> parts) : parts_(std::move(parts)) {}
  void normalize(std::string& s) const override {
    for (const auto& p : parts_) p->normalize(s);
  }

 private:
  std::vector<std::unique_ptr<Normalizer>> parts_;
};

class Prepend : public Normalizer {
 public:
  explicit Prepend(std::string p) : prepend_(std::move(p)) {}
  void normalize(std::string& s) const override {
    if (!s.empty()) s.insert(0, prepend_);
  }

 private:
  std::string prepend_;
};

class ReplaceNormalizer : public Normalizer {
 public:
  ReplaceNormalizer(std::shared_ptr<Regex> re, std::string content) : re_(std::move(re)), content_(std::move(content)) {}
  void normalize(std::string& s) const override { s = re_->replace_all(s, content_); }

 private:
  std::shared_ptr<Regex> re_;
  std::string content_;
};

class Strip : public Normalizer {
 public:
  Strip(bool left, bool right) : left_(left), right_(right) {}
  void normalize(std::string& s) const override {
    size_t b = 0, e = s.size();
    if (left_) {
      while (b < e) {
        size_t len;
        char32_t c = utf8_decode(s, b, &len);
        if (!is_rust_whitespace(c)) break;
        b += len;
      }
    }
    if (right_) {
      while (e > b) {
        size_t p = utf8_prev(s, e);
        size_t len;
        if (!is_rust_whitespace(utf8_decode(s, p, &len))) break;
        e = p;
      }
    }
    s = s.substr(b, e - b);
  }

 private:
  bool left_, right_;
};

}  // namespace

std::unique_ptr<Normalizer> make_normalizer(const json& j, const std::string& src) {
  if (j.is_null()) return nullptr;
  std::string type = component_type(j, src, "normalizer");
  if (type == "NFC") return std::make_unique<UnicodeForm>(UTF8PROC_STABLE | UTF8PROC_COMPOSE, type);
  if (type == "NFD") return std::make_unique<UnicodeForm>(UTF8PROC_STABLE | UTF8PROC_DECOMPOSE, type);
  if (type == "NFKC")
    return std::make_unique<UnicodeForm>(UTF8PROC_STABLE | UTF8PROC_COMPOSE | UTF8PROC_COMPAT, type);
  if (type == "NFKD")
    return std::make_unique<UnicodeForm>(UTF8PROC_STABLE | UTF8PROC_DECOMPOSE | UTF8PROC_COMPAT, type);
  if (type == "Sequence") {
    std::vector<std::unique_ptr<Normalizer>> parts;
    if (!j.contains("normalizers") || !j["normalizers"].is_array())
      throw Error(src, "normalizer Sequence: expected a \"normalizers\" array");
    for (const auto& n : j["normalizers"]) {
      auto p = make_normalizer(n, src);
      if (p) parts.push_back(std::move(p));
    }
    return std::make_unique<SequenceNormalizer>(std::move(parts));
  }
  if (type == "Prepend") return std::make_unique<Prepend>(j.at("prepend").get<std::string>());
  if (type == "Replace") {
    return std::make_unique<ReplaceNormalizer>(json_pattern(j.at("pattern"), src, "normalizer Replace"),
                                               j.at("content").get<std::string>());
  }
  if (type == "Strip") {
    return std::make_unique<Strip>(json_bool(j, "strip_left", true), json_bool(j, "strip_right", true));
  }
  unknown_type(src, "normalizer", type);
}

}  // namespace omni::text::detail
