// Oniguruma-compatible regexes on PCRE2.
//
// HF `tokenizers` compiles tokenizer.json patterns with Oniguruma (its default `onig` feature).
// PCRE2 with UTF+UCP agrees on \p{..} classes, lookahead and case folding; the differences that
// matter are rewritten here:
//   \s  Oniguruma: Unicode White_Space (includes U+0085)    PCRE2: lacks U+0085
//   \w  Oniguruma: letters, marks, all numbers, Pc          PCRE2: letters, numbers, '_'
//   \h  Oniguruma: hex digit                                PCRE2: horizontal space
//   ^ $ Oniguruma (Ruby syntax): line anchors               PCRE2: needs PCRE2_MULTILINE
// Inside a character class the negated forms (\S, \W, \H) are left to PCRE2 (approximate).
#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include "omni/core/error.h"
#include "omni/text/tokenizer_internal.h"

namespace omni::text::detail {

namespace {

const char* const kSpace =
    "\\t-\\r\\x{20}\\x{85}\\x{A0}\\x{1680}\\x{2000}-\\x{200A}\\x{2028}\\x{2029}\\x{202F}"
    "\\x{205F}\\x{3000}";
const char* const kWord =
    "\\p{L}\\p{M}\\p{N}\\p{Pc}\\x{24B6}-\\x{24E9}\\x{1F130}-\\x{1F149}\\x{1F150}-\\x{1F169}"
    "\\x{1F170}-\\x{1F189}";
const char* const kHex = "0-9A-Fa-f";

std::string translate(const std::string& p) {
  std::string out;
  out.reserve(p.size() + 64);
  bool in_class = false;
  size_t i = 0, n = p.size();
  while (i < n) {
    char c = p[i];
    if (c == '\\' && i + 1 < n) {
      char d = p[i + 1];
      const char* set = nullptr;
      bool neg = false;
      switch (d) {
        case 's': set = kSpace; break;
        case 'S': set = kSpace; neg = true; break;
        case 'w': set = kWord; break;
        case 'W': set = kWord; neg = true; break;
        case 'h': set = kHex; break;
        case 'H': set = kHex; neg = true; break;
        default: break;
      }
      if (set != nullptr) {
        if (!in_class) {
          out += neg ? "[^" : "[";
          out += set;
          out += "]";
        } else if (!neg) {
          out += set;
        } else if (d == 'H') {
          out += "\\x{0}-\\x{2F}\\x{3A}-\\x{40}\\x{47}-\\x{60}\\x{67}-\\x{10FFFF}";
        } else {
          out += p.substr(i, 2);
        }
      } else {
        out += c;
        out += d;
      }
      i += 2;
      continue;
    }
    if (in_class) {
      if (c == '[' && i + 1 < n && p[i + 1] == ':') {  // POSIX class like [:alpha:]
        size_t e = p.find(":]", i + 2);
        if (e != std::string::npos) {
          out.append(p, i, e + 2 - i);
          i = e + 2;
          continue;
        }
      }
      if (c == ']') in_class = false;
      out += c;
      ++i;
      continue;
    }
    if (c == '[') {
      in_class = true;
      out += c;
      ++i;
      if (i < n && p[i] == '^') out += p[i++];
      if (i < n && p[i] == ']') out += p[i++];  // literal ']' first in a class
      continue;
    }
    out += c;
    ++i;
  }
  return out;
}

// Per-thread match state: match data (only the whole-match pair is used) and a JIT stack.
struct MatchState {
  pcre2_match_data* md = nullptr;
  pcre2_match_context* mc = nullptr;
  pcre2_jit_stack* js = nullptr;
  MatchState() {
    md = pcre2_match_data_create(1, nullptr);
    mc = pcre2_match_context_create(nullptr);
    js = pcre2_jit_stack_create(64 * 1024, 64 * 1024 * 1024, nullptr);
    if (mc != nullptr && js != nullptr) pcre2_jit_stack_assign(mc, nullptr, js);
    if (mc != nullptr) pcre2_set_match_limit(mc, 0xFFFFFFFFu);
  }
  ~MatchState() {
    if (md) pcre2_match_data_free(md);
    if (mc) pcre2_match_context_free(mc);
    if (js) pcre2_jit_stack_free(js);
  }
};
MatchState& state() {
  thread_local MatchState s;
  if (s.md == nullptr || s.mc == nullptr) throw std::bad_alloc();
  return s;
}

std::string pcre2_message(int code) {
  PCRE2_UCHAR buf[256];
  pcre2_get_error_message(code, buf, sizeof buf);
  return reinterpret_cast<const char*>(buf);
}

}  // namespace

Regex::Regex(const std::string& onig_pattern, const std::string& context) : pattern_(onig_pattern) {
  std::string p = translate(onig_pattern);
  pcre2_compile_context* cc = pcre2_compile_context_create(nullptr);
  if (cc == nullptr) throw std::bad_alloc();
  pcre2_set_newline(cc, PCRE2_NEWLINE_LF);
  int err = 0;
  PCRE2_SIZE erroff = 0;
  pcre2_code* code = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(p.data()), p.size(),
                                   PCRE2_UTF | PCRE2_UCP | PCRE2_MULTILINE, &err, &erroff, cc);
  pcre2_compile_context_free(cc);
  if (code == nullptr) {
    throw Error(context, "cannot compile regex \"" + onig_pattern + "\": " + pcre2_message(err) +
                             " (at offset " + std::to_string(erroff) + ")");
  }
  pcre2_jit_compile(code, PCRE2_JIT_COMPLETE);  // falls back to the interpreter if unavailable
  code_ = std::shared_ptr<void>(code, [](void* c) { pcre2_code_free(static_cast<pcre2_code*>(c)); });
}

std::string Regex::escape(const std::string& literal) {
  std::string out;
  for (char c : literal) {
    auto u = static_cast<unsigned char>(c);
    bool alnum = (u >= '0' && u <= '9') || (u >= 'a' && u <= 'z') || (u >= 'A' && u <= 'Z');
    if (u < 0x80 && !alnum) out += '\\';
    out += c;
  }
  return out;
}

void Regex::find_all(std::string_view text, std::vector<std::pair<size_t, size_t>>& out) const {
  auto* code = static_cast<pcre2_code*>(code_.get());
  MatchState& st = state();
  const auto* subject = reinterpret_cast<PCRE2_SPTR>(text.data());
  size_t n = text.size();
  size_t pos = 0;
  bool have_last = false;
  size_t last_end = 0;
  while (pos <= n) {
    int rc = pcre2_match(code, subject, n, pos, PCRE2_NO_UTF_CHECK, st.md, st.mc);
    if (rc == PCRE2_ERROR_JIT_STACKLIMIT) {
      rc = pcre2_match(code, subject, n, pos, PCRE2_NO_UTF_CHECK | PCRE2_NO_JIT, st.md, st.mc);
    }
    if (rc == PCRE2_ERROR_NOMATCH) break;
    if (rc < 0) throw Error("regex \"" + pattern_ + "\"", "match failed: " + pcre2_message(rc));
    PCRE2_SIZE* ov = pcre2_get_ovector_pointer(st.md);
    size_t s = ov[0], e = ov[1];
    if (s == e && have_last && last_end == e) {
      // An empty match right after the previous match: step one character and search again.
      if (pos >= n) break;
      pos += utf8_seq_len(static_cast<unsigned char>(text[pos]));
      continue;
    }
    out.emplace_back(s, e);
    pos = e;
    have_last = true;
    last_end = e;
  }
}

std::string Regex::replace_all(std::string_view text, const std::string& content) const {
  if (text.empty()) return std::string();
  std::vector<std::pair<size_t, size_t>> m;
  find_all(text, m);
  if (m.empty()) return std::string(text);
  std::string out;
  out.reserve(text.size());
  size_t prev = 0;
  for (auto [s, e] : m) {
    out.append(text.data() + prev, s - prev);
    out += content;
    prev = e;
  }
  out.append(text.data() + prev, text.size() - prev);
  return out;
}

}  // namespace omni::text::detail
