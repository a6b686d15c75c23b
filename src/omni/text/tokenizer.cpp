// Tokenizer: loads tokenizer.json and runs HF's encode pipeline (added tokens -> normalizer ->
// normalized added tokens -> pre-tokenizer -> BPE -> post-processor -> truncation/padding).
#include "omni/text/tokenizer.h"

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "omni/core/error.h"
#include "omni/text/tokenizer_internal.h"

namespace omni::text {

using detail::json;

// ------------------------------------------------------------ JSON helpers ----
namespace detail {

std::string component_type(const json& j, const std::string& src, const char* what) {
  if (!j.is_object()) throw Error(src, std::string(what) + ": expected an object, got " + j.dump());
  if (!j.contains("type") || !j["type"].is_string())
    throw Error(src, std::string(what) + ": missing \"type\"");
  return j["type"].get<std::string>();
}

bool json_bool(const json& j, const char* key, bool dflt) {
  if (!j.contains(key) || j[key].is_null()) return dflt;
  return j[key].get<bool>();
}

std::string json_string(const json& j, const char* key, const std::string& dflt) {
  if (!j.contains(key) || j[key].is_null()) return dflt;
  return j[key].get<std::string>();
}

std::shared_ptr<Regex> json_pattern(const json& j, const std::string& src, const char* what) {
  if (j.is_object() && j.contains("Regex") && j["Regex"].is_string())
    return std::make_shared<Regex>(j["Regex"].get<std::string>(), src + ": " + what);
  if (j.is_object() && j.contains("String") && j["String"].is_string())
    return std::make_shared<Regex>(Regex::escape(j["String"].get<std::string>()), src + ": " + what);
  throw Error(src, std::string(what) + ": pattern must be {\"String\": ...} or {\"Regex\": ...}, got " + j.dump());
}

void unknown_type(const std::string& src, const char* what, const std::string& type) {
  throw Error(src, std::string("unsupported ") + what + " type \"" + type + "\"");
}

}  // namespace detail

// ------------------------------------------------------------------ Impl ----
namespace {

// Byte trie of added-token contents, for leftmost-longest matching.
class Trie {
 public:
  Trie() { std::fill(std::begin(root_), std::end(root_), -1); }
  void add(const std::string& s, int32_t token) {
    if (s.empty()) return;
    auto first = static_cast<unsigned char>(s[0]);
    if (root_[first] < 0) {
      root_[first] = static_cast<int32_t>(nodes_.size());
      nodes_.emplace_back();
    }
    int32_t cur = root_[first];
    for (size_t i = 1; i < s.size(); ++i) {
      auto c = static_cast<unsigned char>(s[i]);
      int32_t nx = -1;
      for (auto [ch, idx] : nodes_[cur].next)
        if (ch == c) nx = idx;
      if (nx < 0) {
        nx = static_cast<int32_t>(nodes_.size());
        nodes_[cur].next.emplace_back(c, nx);
        nodes_.emplace_back();
      }
      cur = nx;
    }
    if (nodes_[cur].token < 0) nodes_[cur].token = token;  // the first of equal contents wins
  }
  bool empty() const { return nodes_.empty(); }
  // Length of the longest token starting at t[i] (0 if none); its index in *token.
  size_t longest(std::string_view t, size_t i, int32_t* token) const {
    int32_t cur = root_[static_cast<unsigned char>(t[i])];
    size_t best = 0;
    for (size_t k = i + 1;; ++k) {
      if (cur < 0) break;
      if (nodes_[cur].token >= 0) {
        best = k - i;
        *token = nodes_[cur].token;
      }
      if (k >= t.size()) break;
      int32_t nx = -1;
      auto c = static_cast<unsigned char>(t[k]);
      for (auto [ch, idx] : nodes_[cur].next)
        if (ch == c) {
          nx = idx;
          break;
        }
      cur = nx;
    }
    return best;
  }
  bool may_start(unsigned char c) const { return root_[c] >= 0; }

 private:
  struct Node {
    std::vector<std::pair<unsigned char, int32_t>> next;
    int32_t token = -1;
  };
  int32_t root_[256];
  std::vector<Node> nodes_;
};

struct Seg {
  std::string text;
  int32_t id = -1;  // >= 0: an added token, already an id
  bool at_origin = false;
};

struct SpecialPiece {
  int32_t id;
  std::string token;
};

// One post-processor step for a single sequence: prefix + ids + suffix.
struct PostStep {
  std::vector<SpecialPiece> prefix, suffix;
};

enum class Direction { Right, Left };

struct Truncation {
  size_t max_length = 0;
  Direction direction = Direction::Right;
};

struct Padding {
  bool fixed = false;
  size_t length = 0;
  size_t multiple_of = 0;
  Direction direction = Direction::Right;
  int32_t pad_id = 0;
};

Direction parse_direction(const json& j, const std::string& src, const char* what) {
  if (!j.contains("direction") || j["direction"].is_null()) return Direction::Right;
  std::string d = j["direction"].get<std::string>();
  if (d == "Right") return Direction::Right;
  if (d == "Left") return Direction::Left;
  throw Error(src, std::string(what) + ": unknown direction \"" + d + "\"");
}

}  // namespace

struct Tokenizer::Impl {
  std::string src;
  std::unique_ptr<detail::Normalizer> normalizer;
  std::unique_ptr<detail::PreTokenizer> pre_tokenizer;
  std::unique_ptr<detail::BPE> model;
  std::vector<PostStep> post;
  std::unique_ptr<detail::Decoder> decoder;
  std::optional<Truncation> truncation;
  std::optional<Padding> padding;

  std::vector<AddedToken> added;  // file order, with the ids HF assigns
  std::unordered_map<std::string, int32_t> added_by_content;
  std::unordered_map<int32_t, size_t> added_by_id;
  std::unordered_map<std::string, bool> special_contents;
  Trie raw_trie, norm_trie;  // tokens matched on the raw / on the normalized text
  std::vector<size_t> trie_token;  // trie token index -> index into `added`
  int32_t max_id = -1;

  void load(const json& j, detail::ModelTables&& tables);
  void load_added_tokens(const json& list);
  void load_post_processor(const json& j);
  void split_added(std::string& text, const Trie& trie, bool at_origin, std::vector<Seg>& out) const;
  void encode(const std::string& input, bool add_special, std::vector<int32_t>& ids) const;
  std::optional<std::string> id_to_token(int32_t id) const;
};

void Tokenizer::Impl::load(const json& j, detail::ModelTables&& tables) {
  if (!j.is_object()) throw Error(src, "tokenizer.json must be a JSON object");
  if (!j.contains("model") || !j["model"].is_object()) throw Error(src, "missing \"model\" object");
  const json& m = j["model"];
  std::string mtype;
  if (m.contains("type") && m["type"].is_string()) mtype = m["type"].get<std::string>();
  else if (m.contains("merges")) mtype = "BPE";  // older files leave the BPE type implicit
  if (mtype != "BPE") detail::unknown_type(src, "model", mtype.empty() ? m.dump().substr(0, 40) : mtype);
  model = std::make_unique<detail::BPE>(m, std::move(tables), src);
  max_id = model->max_id();

  normalizer = detail::make_normalizer(j.value("normalizer", json()), src);
  pre_tokenizer = detail::make_pre_tokenizer(j.value("pre_tokenizer", json()), src);
  decoder = detail::make_decoder(j.value("decoder", json()), src);
  load_added_tokens(j.value("added_tokens", json::array()));
  load_post_processor(j.value("post_processor", json()));

  const json t = j.value("truncation", json());
  if (!t.is_null()) {
    Truncation tr;
    tr.max_length = t.value("max_length", size_t{512});
    tr.direction = parse_direction(t, src, "truncation");
    std::string strategy = t.value("strategy", std::string("LongestFirst"));
    if (strategy != "LongestFirst" && strategy != "OnlyFirst")
      throw Error(src, "truncation strategy \"" + strategy + "\" needs a second sequence");
    truncation = tr;
  }
  const json p = j.value("padding", json());
  if (!p.is_null()) {
    Padding pd;
    const json s = p.value("strategy", json("BatchLongest"));
    if (s.is_object() && s.contains("Fixed")) {
      pd.fixed = true;
      pd.length = s["Fixed"].get<size_t>();
    } else if (!(s.is_string() && s.get<std::string>() == "BatchLongest")) {
      throw Error(src, "padding: unknown strategy " + s.dump());
    }
    pd.direction = parse_direction(p, src, "padding");
    if (p.contains("pad_to_multiple_of") && !p["pad_to_multiple_of"].is_null())
      pd.multiple_of = p["pad_to_multiple_of"].get<size_t>();
    pd.pad_id = p.value("pad_id", 0);
    padding = pd;
  }
}

void Tokenizer::Impl::load_added_tokens(const json& list) {
  if (!list.is_array()) throw Error(src, "\"added_tokens\" must be an array");
  int32_t vocab_len = static_cast<int32_t>(model->vocab_len());
  std::optional<int32_t> max_added;
  for (const auto& t : list) {
    AddedToken a;
    a.content = t.at("content").get<std::string>();
    a.special = detail::json_bool(t, "special", false);
    a.normalized = detail::json_bool(t, "normalized", !a.special);
    a.lstrip = detail::json_bool(t, "lstrip", false);
    a.rstrip = detail::json_bool(t, "rstrip", false);
    a.single_word = detail::json_bool(t, "single_word", false);
    if (a.content.empty() || added_by_content.count(a.content)) continue;
    // HF ignores the "id" field: a token in the model vocab keeps its vocab id, a new one gets
    // the next id after the vocab and the added tokens so far.
    if (auto v = model->token_to_id(a.content)) {
      a.id = *v;
    } else if (!max_added) {
      a.id = vocab_len;
    } else {
      a.id = (*max_added >= vocab_len || vocab_len == 0) ? *max_added + 1 : vocab_len;
    }
    max_added = std::max(max_added.value_or(a.id), a.id);
    max_id = std::max(max_id, a.id);
    added_by_content[a.content] = a.id;
    added_by_id[a.id] = added.size();
    if (a.special) special_contents[a.content] = true;
    added.push_back(a);
  }
  // Tries: special tokens first, then the others (HF's order). Normalized tokens are matched on
  // normalized text, so their contents are normalized too.
  for (int pass = 0; pass < 2; ++pass) {
    for (size_t k = 0; k < added.size(); ++k) {
      const AddedToken& a = added[k];
      if (a.special != (pass == 0)) continue;
      int32_t idx = static_cast<int32_t>(trie_token.size());
      trie_token.push_back(k);
      if (a.normalized) {
        std::string c = a.content;
        if (normalizer) normalizer->normalize(c);
        norm_trie.add(c, idx);
      } else {
        raw_trie.add(a.content, idx);
      }
    }
  }
}

void Tokenizer::Impl::load_post_processor(const json& j) {
  if (j.is_null()) return;
  std::string type = detail::component_type(j, src, "post_processor");
  auto token_pair = [&](const json& v, const char* what) {
    if (!v.is_array() || v.size() != 2 || !v[0].is_string() || !v[1].is_number_integer())
      throw Error(src, std::string("post_processor ") + type + ": \"" + what + "\" must be [token, id]");
    return SpecialPiece{v[1].get<int32_t>(), v[0].get<std::string>()};
  };
  if (type == "ByteLevel") return;  // offsets only
  if (type == "Sequence") {
    if (!j.contains("processors") || !j["processors"].is_array())
      throw Error(src, "post_processor Sequence: expected a \"processors\" array");
    for (const auto& p : j["processors"]) load_post_processor(p);
    return;
  }
  if (type == "RobertaProcessing" || type == "BertProcessing") {
    PostStep s;
    s.prefix.push_back(token_pair(j.at("cls"), "cls"));
    s.suffix.push_back(token_pair(j.at("sep"), "sep"));
    post.push_back(std::move(s));
    return;
  }
  if (type == "TemplateProcessing") {
    std::unordered_map<std::string, std::vector<SpecialPiece>> specials;
    if (j.contains("special_tokens") && j["special_tokens"].is_object()) {
      for (auto it = j["special_tokens"].begin(); it != j["special_tokens"].end(); ++it) {
        const json& st = it.value();
        std::vector<SpecialPiece> v;
        const json& ids = st.at("ids");
        const json& toks = st.at("tokens");
        if (!ids.is_array() || !toks.is_array() || ids.size() != toks.size())
          throw Error(src, "post_processor TemplateProcessing: special token \"" + it.key() + "\" needs ids and tokens of equal length");
        for (size_t k = 0; k < ids.size(); ++k) v.push_back(SpecialPiece{ids[k].get<int32_t>(), toks[k].get<std::string>()});
        specials[st.value("id", it.key())] = std::move(v);
      }
    }
    // The single-sequence template: a list of {"SpecialToken": {"id": ..}} / {"Sequence": {"id": "A"}}
    // pieces, or the string form "<s> $A </s>".
    std::vector<std::pair<bool, std::string>> items;  // (is_sequence, special id)
    const json& single = j.at("single");
    if (single.is_string()) {
      std::istringstream in(single.get<std::string>());
      std::string w;
      while (in >> w) {
        auto colon = w.rfind(':');
        std::string name = (colon != std::string::npos && colon > 0) ? w.substr(0, colon) : w;
        if (!name.empty() && name[0] == '$') items.emplace_back(true, name.substr(1));
        else items.emplace_back(false, name);
      }
    } else if (single.is_array()) {
      for (const auto& piece : single) {
        if (piece.contains("Sequence")) items.emplace_back(true, piece["Sequence"].value("id", std::string("A")));
        else if (piece.contains("SpecialToken")) items.emplace_back(false, piece["SpecialToken"].at("id").get<std::string>());
        else throw Error(src, "post_processor TemplateProcessing: unknown template piece " + piece.dump());
      }
    } else {
      throw Error(src, "post_processor TemplateProcessing: \"single\" must be a list or a string");
    }
    PostStep s;
    bool seen_seq = false;
    for (const auto& [is_seq, name] : items) {
      if (is_seq) {
        if (!(name == "A" || name.empty()) || seen_seq)
          throw Error(src, "post_processor TemplateProcessing: the single template must hold $A once");
        seen_seq = true;
        continue;
      }
      auto it = specials.find(name);
      if (it == specials.end())
        throw Error(src, "post_processor TemplateProcessing: special token \"" + name + "\" is not in special_tokens");
      auto& dst = seen_seq ? s.suffix : s.prefix;
      dst.insert(dst.end(), it->second.begin(), it->second.end());
    }
    post.push_back(std::move(s));
    return;
  }
  detail::unknown_type(src, "post_processor", type);
}

// Splits `text` around the added tokens of `trie` (leftmost-longest, then single_word / lstrip /
// rstrip as HF applies them). Pieces that are not tokens keep their text; empty ones are dropped.
void Tokenizer::Impl::split_added(std::string& text, const Trie& trie, bool at_origin, std::vector<Seg>& out) const {
  if (text.empty()) return;
  if (trie.empty()) {
    out.push_back(Seg{std::move(text), -1, at_origin});
    return;
  }
  std::string_view t(text);
  size_t n = t.size();
  size_t start_offset = 0;
  auto push_text = [&](size_t b, size_t e) {
    if (e > b) out.push_back(Seg{std::string(t.substr(b, e - b)), -1, at_origin && b == 0});
  };
  for (size_t i = 0; i < n;) {
    int32_t tok = -1;
    size_t len = trie.may_start(static_cast<unsigned char>(t[i])) ? trie.longest(t, i, &tok) : 0;
    if (len == 0) {
      ++i;
      continue;
    }
    size_t start = i, stop = i + len;
    i = stop;  // matches never overlap, even when this one is discarded
    const AddedToken& a = added[trie_token[tok]];
    if (a.single_word) {
      size_t cl;
      bool start_ok = start == 0 || !detail::is_word_char(detail::utf8_decode(t, detail::utf8_prev(t, start), &cl));
      bool stop_ok = stop == n || !detail::is_word_char(detail::utf8_decode(t, stop, &cl));
      if (!start_ok || !stop_ok) continue;
    }
    if (a.lstrip) {
      size_t s = start;
      while (s > 0) {
        size_t p = detail::utf8_prev(t, s), cl;
        if (!detail::is_rust_whitespace(detail::utf8_decode(t, p, &cl))) break;
        s = p;
      }
      start = std::max(s, start_offset);
    }
    if (a.rstrip) {
      while (stop < n) {
        size_t cl;
        if (!detail::is_rust_whitespace(detail::utf8_decode(t, stop, &cl))) break;
        stop += cl;
      }
    }
    if (start_offset < start) push_text(start_offset, start);
    out.push_back(Seg{std::string(), a.id, false});
    start_offset = stop;
  }
  if (start_offset < n) push_text(start_offset, n);
}

void Tokenizer::Impl::encode(const std::string& input, bool add_special, std::vector<int32_t>& ids) const {
  std::string text = detail::utf8_lossy(input);
  std::vector<Seg> segs, sub;
  split_added(text, raw_trie, true, segs);
  std::vector<detail::Piece> pieces;
  for (auto& seg : segs) {
    if (seg.id >= 0) {
      ids.push_back(seg.id);
      continue;
    }
    if (normalizer) normalizer->normalize(seg.text);
    sub.clear();
    split_added(seg.text, norm_trie, seg.at_origin, sub);
    for (auto& s : sub) {
      if (s.id >= 0) {
        ids.push_back(s.id);
        continue;
      }
      pieces.clear();
      pieces.push_back(detail::Piece{std::move(s.text), s.at_origin});
      if (pre_tokenizer) pre_tokenizer->pre_tokenize(pieces);
      for (const auto& p : pieces) model->tokenize(p.text, ids);
    }
  }

  size_t n_added = 0;
  if (add_special)
    for (const auto& s : post) n_added += s.prefix.size() + s.suffix.size();
  if (truncation) {
    const Truncation& tr = *truncation;
    if (n_added > tr.max_length)
      throw Error(src, "truncation max_length " + std::to_string(tr.max_length) + " is smaller than the " +
                           std::to_string(n_added) + " special tokens added");
    size_t keep = tr.max_length - n_added;
    if (ids.size() > keep) {
      if (tr.direction == Direction::Right) ids.resize(keep);
      else ids.erase(ids.begin(), ids.end() - static_cast<std::ptrdiff_t>(keep));
    }
  }
  if (add_special) {
    for (const auto& s : post) {
      std::vector<int32_t> out;
      out.reserve(ids.size() + s.prefix.size() + s.suffix.size());
      for (const auto& p : s.prefix) out.push_back(p.id);
      out.insert(out.end(), ids.begin(), ids.end());
      for (const auto& p : s.suffix) out.push_back(p.id);
      ids.swap(out);
    }
  }
  if (padding) {
    const Padding& pd = *padding;
    size_t target = pd.fixed ? pd.length : ids.size();
    if (pd.multiple_of > 0 && target % pd.multiple_of != 0) target += pd.multiple_of - target % pd.multiple_of;
    if (ids.size() < target) {
      size_t k = target - ids.size();
      if (pd.direction == Direction::Right) ids.insert(ids.end(), k, pd.pad_id);
      else ids.insert(ids.begin(), k, pd.pad_id);
    }
  }
}

std::optional<std::string> Tokenizer::Impl::id_to_token(int32_t id) const {
  auto it = added_by_id.find(id);
  if (it != added_by_id.end()) return added[it->second].content;
  if (const std::string_view* t = model->id_to_token(id)) return std::string(*t);
  return std::nullopt;
}

// ------------------------------------------------------------- Tokenizer ----

Tokenizer::Tokenizer(std::shared_ptr<const Impl> impl) : impl_(std::move(impl)) {}
Tokenizer::~Tokenizer() = default;

Tokenizer Tokenizer::from_file(const std::string& path) {
  {  // a FIFO or /dev/zero would be read forever
    std::error_code ec;
    const auto st = std::filesystem::status(path, ec);
    if (!ec && std::filesystem::exists(st) && !std::filesystem::is_regular_file(st))
      throw Error(path, "not a regular file (a folder, device or pipe); expected a tokenizer.json");
  }
  std::ifstream f(path, std::ios::binary);
  if (!f) throw Error(path, "cannot open tokenizer file");
  std::ostringstream ss;
  ss << f.rdbuf();
  if (f.bad()) throw Error(path, "cannot read tokenizer file");
  return from_json_string(ss.str(), path);
}

Tokenizer Tokenizer::from_json_string(const std::string& text, const std::string& source_name) {
  auto impl = std::make_shared<Impl>();
  impl->src = source_name;
  json j;
  detail::ModelTables tables;
  detail::parse_tokenizer_json(text, source_name, j, tables);
  try {
    impl->load(j, std::move(tables));
  } catch (const json::exception& e) {
    throw Error(source_name, std::string("invalid tokenizer.json: ") + e.what());
  }
  return Tokenizer(std::move(impl));
}

std::vector<int32_t> Tokenizer::encode(const std::string& text, bool add_special_tokens) const {
  std::vector<int32_t> ids;
  impl_->encode(text, add_special_tokens, ids);
  return ids;
}

std::vector<std::string> Tokenizer::encode_tokens(const std::string& text, bool add_special_tokens) const {
  std::vector<std::string> out;
  for (int32_t id : encode(text, add_special_tokens)) out.push_back(impl_->id_to_token(id).value_or(""));
  return out;
}

std::string Tokenizer::decode(const std::vector<int32_t>& ids, bool skip_special_tokens) const {
  std::vector<std::string> tokens;
  tokens.reserve(ids.size());
  for (int32_t id : ids) {
    auto t = impl_->id_to_token(id);
    if (!t) continue;  // unknown ids are skipped, as HF does
    if (skip_special_tokens && impl_->special_contents.count(*t)) continue;
    tokens.push_back(std::move(*t));
  }
  if (!impl_->decoder) {
    std::string out;
    for (size_t i = 0; i < tokens.size(); ++i) {
      if (i) out += ' ';
      out += tokens[i];
    }
    return out;
  }
  impl_->decoder->decode_chain(tokens);
  std::string out;
  for (const auto& t : tokens) out += t;
  return out;
}

std::optional<int32_t> Tokenizer::token_to_id(const std::string& token) const {
  auto it = impl_->added_by_content.find(token);
  if (it != impl_->added_by_content.end()) return it->second;
  return impl_->model->token_to_id(token);
}

int32_t Tokenizer::require_token_id(const std::string& token) const {
  if (auto id = token_to_id(token)) return *id;
  throw Error(impl_->src, "token \"" + token + "\" is not in the vocabulary");
}

std::optional<std::string> Tokenizer::id_to_token(int32_t id) const { return impl_->id_to_token(id); }

bool Tokenizer::is_special(int32_t id) const {
  auto it = impl_->added_by_id.find(id);
  return it != impl_->added_by_id.end() && impl_->added[it->second].special;
}

size_t Tokenizer::vocab_size() const { return static_cast<size_t>(impl_->max_id + 1); }

const std::vector<AddedToken>& Tokenizer::added_tokens() const { return impl_->added; }

const std::string& Tokenizer::source_name() const { return impl_->src; }

}  // namespace omni::text
