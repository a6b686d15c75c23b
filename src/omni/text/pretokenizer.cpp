// Pre-tokenizers: ByteLevel, Split, Digits, WhitespaceSplit, Metaspace, Sequence.
#include <algorithm>

#include "omni/core/error.h"
#include "omni/text/tokenizer_internal.h"

namespace omni::text::detail {

namespace {

enum class Behavior { Removed, Isolated, MergedWithPrevious, MergedWithNext, Contiguous };

Behavior parse_behavior(const json& j, const std::string& src, const char* what) {
  std::string b = j.is_string() ? j.get<std::string>() : std::string();
  if (b == "Removed") return Behavior::Removed;
  if (b == "Isolated") return Behavior::Isolated;
  if (b == "MergedWithPrevious") return Behavior::MergedWithPrevious;
  if (b == "MergedWithNext") return Behavior::MergedWithNext;
  if (b == "Contiguous") return Behavior::Contiguous;
  throw Error(src, std::string(what) + ": unknown split behavior \"" + (j.is_string() ? b : j.dump()) + "\"");
}

struct Span {
  size_t s, e;
  bool m;
};

// The text [0, n) as alternating non-match / match spans, from the matches (as HF's Pattern).
void spans_from_matches(size_t n, const std::vector<std::pair<size_t, size_t>>& matches,
                        std::vector<Span>& spans) {
  spans.clear();
  if (n == 0) {
    spans.push_back({0, 0, false});
    return;
  }
  size_t prev = 0;
  for (auto [s, e] : matches) {
    if (prev != s) spans.push_back({prev, s, false});
    spans.push_back({s, e, true});
    prev = e;
  }
  if (prev != n) spans.push_back({prev, n, false});
}

// Every char for which pred holds is its own match span; runs of others are non-match spans.
template <class Pred>
void spans_from_chars(std::string_view t, Pred pred, std::vector<Span>& spans) {
  spans.clear();
  size_t last = 0, i = 0;
  while (i < t.size()) {
    size_t len;
    char32_t c = utf8_decode(t, i, &len);
    if (pred(c)) {
      if (last < i) spans.push_back({last, i, false});
      spans.push_back({i, i + len, true});
      last = i + len;
    }
    i += len;
  }
  if (i > last) spans.push_back({last, i, false});
}

// Applies a split behavior and appends the non-empty pieces of `p` to `out`.
void emit(const Piece& p, std::vector<Span>& spans, Behavior b, bool invert, std::vector<Piece>& out) {
  if (invert)
    for (auto& s : spans) s.m = !s.m;
  std::vector<Span> acc;
  acc.reserve(spans.size());
  switch (b) {
    case Behavior::Isolated:
      acc = spans;
      for (auto& s : acc) s.m = false;
      break;
    case Behavior::Removed:
      acc = spans;
      break;
    case Behavior::MergedWithPrevious: {
      bool prev_match = false;
      for (const auto& s : spans) {
        if (s.m && !prev_match && !acc.empty()) acc.back().e = s.e;
        else acc.push_back({s.s, s.e, false});
        prev_match = s.m;
      }
      break;
    }
    case Behavior::MergedWithNext: {
      bool prev_match = false;
      for (auto it = spans.rbegin(); it != spans.rend(); ++it) {
        if (it->m && !prev_match && !acc.empty()) acc.back().s = it->s;
        else acc.push_back({it->s, it->e, false});
        prev_match = it->m;
      }
      std::reverse(acc.begin(), acc.end());
      break;
    }
    case Behavior::Contiguous: {
      bool prev_match = false;
      for (const auto& s : spans) {
        if (s.m == prev_match && !acc.empty()) acc.back().e = s.e;
        else acc.push_back({s.s, s.e, false});
        prev_match = s.m;
      }
      break;
    }
  }
  for (const auto& s : acc) {
    if (s.m || s.e <= s.s) continue;  // removed, or empty
    out.push_back(Piece{p.text.substr(s.s, s.e - s.s), p.at_origin && s.s == 0});
  }
}

const char* const kGpt2Pattern =
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";

class ByteLevel : public PreTokenizer {
 public:
  ByteLevel(bool add_prefix_space, bool use_regex, const std::string& src)
      : add_prefix_space_(add_prefix_space) {
    if (use_regex) re_ = std::make_shared<Regex>(kGpt2Pattern, src + ": ByteLevel");
  }
  void pre_tokenize(std::vector<Piece>& pieces) const override {
    std::vector<Piece> out;
    out.reserve(pieces.size());
    std::vector<std::pair<size_t, size_t>> m;
    std::vector<Span> spans;
    for (auto& p : pieces) {
      if (p.text.empty()) continue;
      if (add_prefix_space_ && p.text[0] != ' ') p.text.insert(0, " ");
      size_t first = out.size();
      if (re_) {
        m.clear();
        re_->find_all(p.text, m);
        spans_from_matches(p.text.size(), m, spans);
        emit(p, spans, Behavior::Isolated, false, out);
      } else {
        out.push_back(std::move(p));
      }
      std::string mapped;
      for (size_t i = first; i < out.size(); ++i) {
        byte_level_map(out[i].text, mapped);
        out[i].text.swap(mapped);
      }
    }
    pieces.swap(out);
  }

 private:
  bool add_prefix_space_;
  std::shared_ptr<Regex> re_;
};

class Split : public PreTokenizer {
 public:
  Split(std::shared_ptr<Regex> re, Behavior b, bool invert) : re_(std::move(re)), b_(b), invert_(invert) {}
  void pre_tokenize(std::vector<Piece>& pieces) const override {
    std::vector<Piece> out;
    out.reserve(pieces.size() * 2);
    std::vector<std::pair<size_t, size_t>> m;
    std::vector<Span> spans;
    for (const auto& p : pieces) {
      m.clear();
      re_->find_all(p.text, m);
      spans_from_matches(p.text.size(), m, spans);
      emit(p, spans, b_, invert_, out);
    }
    pieces.swap(out);
  }

 private:
  std::shared_ptr<Regex> re_;
  Behavior b_;
  bool invert_;
};

class Digits : public PreTokenizer {
 public:
  explicit Digits(bool individual) : individual_(individual) {}
  void pre_tokenize(std::vector<Piece>& pieces) const override {
    std::vector<Piece> out;
    std::vector<Span> spans;
    for (const auto& p : pieces) {
      spans_from_chars(p.text, is_rust_numeric, spans);
      emit(p, spans, individual_ ? Behavior::Isolated : Behavior::Contiguous, false, out);
    }
    pieces.swap(out);
  }

 private:
  bool individual_;
};

class WhitespaceSplit : public PreTokenizer {
 public:
  void pre_tokenize(std::vector<Piece>& pieces) const override {
    std::vector<Piece> out;
    std::vector<Span> spans;
    for (const auto& p : pieces) {
      spans_from_chars(p.text, is_rust_whitespace, spans);
      emit(p, spans, Behavior::Removed, false, out);
    }
    pieces.swap(out);
  }
};

class Metaspace : public PreTokenizer {
 public:
  enum class Prepend { Always, First, Never };
  Metaspace(char32_t replacement, Prepend scheme, bool split)
      : replacement_(replacement), scheme_(scheme), split_(split) {
    utf8_append(rep_, replacement);
  }
  void pre_tokenize(std::vector<Piece>& pieces) const override {
    std::vector<Piece> out;
    std::vector<Span> spans;
    for (auto& p : pieces) {
      std::string t;
      t.reserve(p.text.size() + 3);
      for (char c : p.text) {
        if (c == ' ') t += rep_;
        else t += c;
      }
      bool starts = t.compare(0, rep_.size(), rep_) == 0;
      if (!starts && (scheme_ == Prepend::Always || (scheme_ == Prepend::First && p.at_origin))) {
        t.insert(0, rep_);
      }
      Piece q{std::move(t), p.at_origin};
      if (split_) {
        char32_t r = replacement_;
        spans_from_chars(q.text, [r](char32_t c) { return c == r; }, spans);
        emit(q, spans, Behavior::MergedWithNext, false, out);
      } else if (!q.text.empty()) {
        out.push_back(std::move(q));
      }
    }
    pieces.swap(out);
  }

 private:
  char32_t replacement_;
  std::string rep_;
  Prepend scheme_;
  bool split_;
};

class SequencePre : public PreTokenizer {
 public:
  explicit SequencePre(std::vector<std::unique_ptr<PreTokenizer>> parts) : parts_(std::move(parts)) {}
  void pre_tokenize(std::vector<Piece>& pieces) const override {
    for (const auto& p : parts_) p->pre_tokenize(pieces);
  }

 private:
  std::vector<std::unique_ptr<PreTokenizer>> parts_;
};

}  // namespace

std::unique_ptr<PreTokenizer> make_pre_tokenizer(const json& j, const std::string& src) {
  if (j.is_null()) return nullptr;
  std::string type = component_type(j, src, "pre_tokenizer");
  if (type == "ByteLevel") {
    return std::make_unique<ByteLevel>(json_bool(j, "add_prefix_space", true), json_bool(j, "use_regex", true), src);
  }
  if (type == "Split") {
    if (!j.contains("pattern")) throw Error(src, "pre_tokenizer Split: missing \"pattern\"");
    return std::make_unique<Split>(json_pattern(j["pattern"], src, "pre_tokenizer Split"),
                                   parse_behavior(j.value("behavior", json()), src, "pre_tokenizer Split"),
                                   json_bool(j, "invert", false));
  }
  if (type == "Digits") return std::make_unique<Digits>(json_bool(j, "individual_digits", false));
  if (type == "WhitespaceSplit") return std::make_unique<WhitespaceSplit>();
  if (type == "Metaspace") {
    std::string rep = json_string(j, "replacement", "\xE2\x96\x81");
    size_t len = 0;
    if (rep.empty() || !utf8_valid(rep) || (utf8_decode(rep, 0, &len), len != rep.size()))
      throw Error(src, "pre_tokenizer Metaspace: \"replacement\" must be one character");
    Metaspace::Prepend scheme = Metaspace::Prepend::Always;
    if (j.contains("prepend_scheme") && j["prepend_scheme"].is_string()) {
      std::string s = j["prepend_scheme"].get<std::string>();
      if (s == "always") scheme = Metaspace::Prepend::Always;
      else if (s == "first") scheme = Metaspace::Prepend::First;
      else if (s == "never") scheme = Metaspace::Prepend::Never;
      else throw Error(src, "pre_tokenizer Metaspace: unknown prepend_scheme \"" + s + "\"");
    } else if (!json_bool(j, "add_prefix_space", true)) {
      scheme = Metaspace::Prepend::Never;
    }
    return std::make_unique<Metaspace>(utf8_decode(rep, 0, &len), scheme, json_bool(j, "split", true));
  }
  if (type == "Sequence") {
    if (!j.contains("pretokenizers") || !j["pretokenizers"].is_array())
      throw Error(src, "pre_tokenizer Sequence: expected a \"pretokenizers\" array");
    std::vector<std::unique_ptr<PreTokenizer>> parts;
    for (const auto& p : j["pretokenizers"]) {
      auto q = make_pre_tokenizer(p, src);
      if (q) parts.push_back(std::move(q));
    }
    return std::make_unique<SequencePre>(std::move(parts));
  }
  unknown_type(src, "pre_tokenizer", type);
}

}  // namespace omni::text::detail
