// Internal pieces of the tokenizer (not part of the public API): UTF-8 helpers, an
// Oniguruma-compatible regex wrapper over PCRE2, and the pipeline components.
#pragma once
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <shared_mutex>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

namespace omni::text::detail {

using json = nlohmann::json;

// ---------------------------------------------------------------- UTF-8 ----
// Length of the valid UTF-8 sequence starting with lead byte `b` (1..4); 1 for a stray byte.
inline size_t utf8_seq_len(unsigned char b) {
  if (b < 0x80) return 1;
  if (b >= 0xF0) return 4;
  if (b >= 0xE0) return 3;
  if (b >= 0xC0) return 2;
  return 1;
}
// Decodes one code point of VALID UTF-8 at s[i]; sets len to its byte length.
char32_t utf8_decode(std::string_view s, size_t i, size_t* len);
void utf8_append(std::string& out, char32_t cp);
// Offset of the code point that ends at `end` (end > 0), for valid UTF-8.
size_t utf8_prev(std::string_view s, size_t end);
bool utf8_valid(std::string_view s);
std::string utf8_lossy(std::string_view s);

// Character classes with the semantics the HF Rust code uses.
bool is_rust_whitespace(char32_t c);  // char::is_whitespace (Unicode White_Space)
bool is_rust_numeric(char32_t c);     // char::is_numeric (general category N*)
bool is_word_char(char32_t c);        // regex crate \w (used for added tokens' single_word)

// ---------------------------------------------------------------- Regex ----
// A compiled pattern with Oniguruma semantics (what HF's `onig` feature uses): \s is Unicode
// White_Space, \w includes marks and all numbers, \h is a hex digit, ^/$ are line anchors, '.'
// excludes '\n'. Translated to PCRE2 (UTF + UCP, JIT-compiled).
class Regex {
 public:
  Regex(const std::string& onig_pattern, const std::string& context);
  static std::string escape(const std::string& literal);
  // All matches, left to right, with the iteration rule of the Rust onig crate's find_iter
  // (an empty match right after the previous match is skipped). Byte offsets.
  void find_all(std::string_view text, std::vector<std::pair<size_t, size_t>>& out) const;
  // Replaces every match with `content`.
  std::string replace_all(std::string_view text, const std::string& content) const;

 private:
  std::shared_ptr<void> code_;  // pcre2_code_8
  std::string pattern_;
};

// --------------------------------------------------------- JSON helpers ----
// The "type" of a component object; throws naming `what` and the file when it is missing.
std::string component_type(const json& j, const std::string& src, const char* what);
bool json_bool(const json& j, const char* key, bool dflt);
std::string json_string(const json& j, const char* key, const std::string& dflt);
// A {"String": s} or {"Regex": r} pattern, compiled (a String is matched literally).
std::shared_ptr<Regex> json_pattern(const json& j, const std::string& src, const char* what);
[[noreturn]] void unknown_type(const std::string& src, const char* what, const std::string& type);

// ------------------------------------------------------------- Pieces -----
struct Piece {
  std::string text;
  bool at_origin = false;  // starts at byte 0 of the caller's original text
};

// ---------------------------------------------------------- Components ----
struct Normalizer {
  virtual ~Normalizer() = default;
  virtual void normalize(std::string& s) const = 0;
};
std::unique_ptr<Normalizer> make_normalizer(const json& j, const std::string& src);

struct PreTokenizer {
  virtual ~PreTokenizer() = default;
  // Replaces `pieces` with its pre-tokenized pieces; empty pieces are dropped.
  virtual void pre_tokenize(std::vector<Piece>& pieces) const = 0;
};
std::unique_ptr<PreTokenizer> make_pre_tokenizer(const json& j, const std::string& src);

struct Decoder {
  virtual ~Decoder() = default;
  virtual void decode_chain(std::vector<std::string>& tokens) const = 0;
};
std::unique_ptr<Decoder> make_decoder(const json& j, const std::string& src);

// Byte-level alphabet of GPT-2: byte -> code point, and back (-1 where a code point is not one).
char32_t byte_to_char(uint8_t b);
int char_to_byte(char32_t c);
// The UTF-8 of byte_to_char(b) for every byte, concatenated per byte (for fast mapping).
void byte_level_map(std::string_view in, std::string& out);

// ------------------------------------------------------ streamed loading ----
// model.vocab and model.merges, read straight from the JSON text (they are most of a
// tokenizer.json; building them as a DOM would dominate load time).
struct ModelTables {
  bool has_vocab = false;
  std::string vocab_text;                                    // all vocab keys, concatenated
  std::vector<std::pair<uint32_t, int32_t>> vocab;           // (end offset in vocab_text, id)
  bool has_merges = false;
  std::string merge_text;                                    // "a" and "b" of every merge
  std::vector<std::pair<uint32_t, uint32_t>> merges;         // (end of a, end of b) in merge_text
};
// Parses a tokenizer.json: everything but model.vocab / model.merges into `dom`, those two into
// `tables`. Throws omni::Error naming `src` on malformed JSON or malformed vocab/merges entries.
void parse_tokenizer_json(const std::string& text, const std::string& src, json& dom, ModelTables& tables);

// ----------------------------------------------------------------- BPE ----
class BPE {
 public:
  BPE(const json& model, ModelTables&& tables, const std::string& src);
  BPE(const BPE&) = delete;
  BPE& operator=(const BPE&) = delete;

  // Appends the ids of `word` to `out`.
  void tokenize(std::string_view word, std::vector<int32_t>& out) const;
  std::optional<int32_t> token_to_id(std::string_view token) const;
  const std::string_view* id_to_token(int32_t id) const;
  size_t vocab_len() const { return vocab_.size(); }  // HF get_vocab_size()
  int32_t max_id() const { return static_cast<int32_t>(id_to_tok_.size()) - 1; }

 private:
  void merge_word(std::string_view word, std::vector<int32_t>& out) const;
  static uint64_t key(int32_t a, int32_t b) {
    return (static_cast<uint64_t>(static_cast<uint32_t>(a)) << 32) | static_cast<uint32_t>(b);
  }

  std::string src_;
  std::string arena_;  // all token strings
  std::unordered_map<std::string_view, int32_t> vocab_;
  std::vector<std::string_view> id_to_tok_;
  std::vector<bool> has_id_;
  struct MergeInfo {
    int32_t rank;
    int32_t new_id;
  };
  std::unordered_map<uint64_t, MergeInfo> merges_;
  std::optional<std::string> unk_token_;
  std::string prefix_, suffix_;
  bool fuse_unk_ = false;
  bool byte_fallback_ = false;
  bool ignore_merges_ = false;
  int32_t byte_ids_[256];  // id of "<0xXX>" or -1

  mutable std::shared_mutex cache_mu_;
  mutable std::unordered_map<std::string, std::vector<int32_t>> cache_;
};

}  // namespace omni::text::detail
