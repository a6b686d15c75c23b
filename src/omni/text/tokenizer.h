// A Hugging Face `tokenizer.json` tokenizer (byte-level BPE and SentencePiece-style BPE) that gives
// the same ids as the Rust `tokenizers` library. Torch-free.
//
// Pipeline (as in HF): added tokens are split out of the raw text first (longest match wins), the
// remaining pieces are normalized (per piece), normalized added tokens are split out, the pieces are
// pre-tokenized, each pre-token goes through the BPE model, then the post-processor adds special
// tokens (when asked) and truncation/padding from the file apply.
//
// Invalid UTF-8 input: every maximal invalid subsequence becomes U+FFFD before encoding (the rule of
// Rust's String::from_utf8_lossy and of Node's Buffer.toString, which is what the HF Node binding
// would receive). Decoding uses the same rule for byte sequences that are not valid UTF-8.
//
// Thread safety: a Tokenizer is immutable after loading except for an internal word cache that is
// guarded by a lock, so encode/decode may be called from several threads at once. Copies share
// the loaded data.
#pragma once
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace omni::text {

struct AddedToken {
  std::string content;
  int32_t id = -1;
  bool special = false;
  bool normalized = false;
  bool lstrip = false;
  bool rstrip = false;
  bool single_word = false;
};

class Tokenizer {
 public:
  // Loads a tokenizer.json. Throws omni::Error naming the file for a missing file, bad JSON or an
  // unsupported component type.
  static Tokenizer from_file(const std::string& path);
  // `source_name` is used in error messages (e.g. the path the JSON came from).
  static Tokenizer from_json_string(const std::string& json, const std::string& source_name);

  // Text -> ids. `add_special_tokens` runs the post-processor's template (BOS etc.).
  std::vector<int32_t> encode(const std::string& text, bool add_special_tokens = true) const;
  // Text -> token strings (the model's tokens, e.g. "Ġhello"), same segmentation as encode.
  std::vector<std::string> encode_tokens(const std::string& text, bool add_special_tokens = true) const;
  // Ids -> text through the file's decoder. Unknown ids are skipped (as HF does).
  std::string decode(const std::vector<int32_t>& ids, bool skip_special_tokens = false) const;

  std::optional<int32_t> token_to_id(const std::string& token) const;  // added tokens, then vocab
  int32_t require_token_id(const std::string& token) const;           // throws omni::Error
  std::optional<std::string> id_to_token(int32_t id) const;
  bool is_special(int32_t id) const;  // an added token marked special
  size_t vocab_size() const;          // max id + 1, added tokens included
  const std::vector<AddedToken>& added_tokens() const;
  const std::string& source_name() const;

  Tokenizer(const Tokenizer&) = default;
  Tokenizer(Tokenizer&&) noexcept = default;
  Tokenizer& operator=(const Tokenizer&) = default;
  Tokenizer& operator=(Tokenizer&&) noexcept = default;
  ~Tokenizer();

 private:
  struct Impl;
  explicit Tokenizer(std::shared_ptr<const Impl> impl);
  std::shared_ptr<const Impl> impl_;
};

// Replaces each maximal invalid UTF-8 subsequence with U+FFFD (Unicode "maximal subpart" practice,
// as Rust's from_utf8_lossy and WHATWG decoders do). Valid input is returned unchanged.
std::string sanitize_utf8(const std::string& s);

}  // namespace omni::text
