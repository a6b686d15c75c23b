// Streaming tokenizer.json reader: a SAX handler that builds an ordinary DOM for the small parts
// of the file and writes model.vocab / model.merges straight into flat tables.
#include "omni/core/error.h"
#include "omni/text/tokenizer_internal.h"

namespace omni::text::detail {

namespace {

class Handler {
 public:
  using string_t = json::string_t;

  Handler(const std::string& src, json& dom, ModelTables& t) : src_(src), dom_(dom), t_(t) {}

  // What the innermost open container is.
  enum class Kind { Dom, Vocab, Merges, MergePair };

  bool null() { return value(json(nullptr)); }
  bool boolean(bool v) { return value(json(v)); }
  bool number_integer(json::number_integer_t v) {
    if (top() == Kind::Vocab) return vocab_id(v);
    return value(json(v));
  }
  bool number_unsigned(json::number_unsigned_t v) {
    if (top() == Kind::Vocab) return vocab_id(v > static_cast<json::number_unsigned_t>(INT64_MAX) ? -1 : static_cast<int64_t>(v));
    return value(json(v));
  }
  bool number_float(json::number_float_t v, const string_t&) {
    if (top() == Kind::Vocab) return fail("model BPE: vocab id of \"" + key_ + "\" is not an integer");
    return value(json(v));
  }
  bool binary(json::binary_t&) { return fail("unexpected binary value"); }
  bool string(string_t& v) {
    switch (top()) {
      case Kind::Vocab:
        return fail("model BPE: vocab id of \"" + key_ + "\" is not an integer");
      case Kind::Merges: {
        size_t sp = v.find(' ');
        if (sp == std::string::npos || v.find(' ', sp + 1) != std::string::npos)
          return fail("model BPE: merge " + std::to_string(t_.merges.size() + 1) + " \"" + v +
                      "\" is not two tokens separated by one space");
        t_.merge_text.append(v, 0, sp);
        uint32_t a_end = static_cast<uint32_t>(t_.merge_text.size());
        t_.merge_text.append(v, sp + 1, std::string::npos);
        t_.merges.emplace_back(a_end, static_cast<uint32_t>(t_.merge_text.size()));
        return true;
      }
      case Kind::MergePair:
        if (++pair_n_ > 2) return bad_merge();
        t_.merge_text += v;
        if (pair_n_ == 1) pair_a_end_ = static_cast<uint32_t>(t_.merge_text.size());
        return true;
      case Kind::Dom:
        return value(json(std::move(v)));
    }
    return true;
  }
  bool key(string_t& k) {
    key_ = std::move(k);
    return true;
  }
  bool start_object(size_t) {
    if (top() == Kind::Dom && at_model_member("vocab")) {
      t_.has_vocab = true;
      t_.vocab.clear();
      t_.vocab_text.clear();
      kinds_.push_back(Kind::Vocab);
      return true;
    }
    if (top() != Kind::Dom) return top() == Kind::Vocab ? fail("model BPE: vocab id of \"" + key_ + "\" is not an integer") : bad_merge();
    return open(json::object());
  }
  bool start_array(size_t) {
    if (top() == Kind::Dom && at_model_member("merges")) {
      t_.has_merges = true;
      t_.merges.clear();
      t_.merge_text.clear();
      kinds_.push_back(Kind::Merges);
      return true;
    }
    if (top() == Kind::Merges) {
      pair_n_ = 0;
      kinds_.push_back(Kind::MergePair);
      return true;
    }
    if (top() != Kind::Dom) return top() == Kind::Vocab ? fail("model BPE: vocab id of \"" + key_ + "\" is not an integer") : bad_merge();
    return open(json::array());
  }
  bool end_object() { return close(); }
  bool end_array() {
    if (top() == Kind::MergePair) {
      if (pair_n_ != 2) return bad_merge();
      t_.merges.emplace_back(pair_a_end_, static_cast<uint32_t>(t_.merge_text.size()));
    }
    return close();
  }
  bool parse_error(size_t, const std::string&, const nlohmann::detail::exception& ex) {
    error_ = Error(src_, std::string("invalid JSON: ") + ex.what());
    return false;
  }

  const std::optional<Error>& error() const { return error_; }

 private:
  Kind top() const { return kinds_.empty() ? Kind::Dom : kinds_.back(); }

  // True when the value about to open is root["model"][name].
  bool at_model_member(const char* name) const {
    return stack_.size() == 2 && key_ == name && keys_.size() == 2 && keys_[1] == "model" &&
           stack_[0]->is_object() && stack_[1]->is_object();
  }

  json* insert(json&& v) {
    if (stack_.empty()) {
      dom_ = std::move(v);
      return &dom_;
    }
    json* parent = stack_.back();
    if (parent->is_array()) {
      parent->push_back(std::move(v));
      return &parent->back();
    }
    json& slot = (*parent)[key_];
    slot = std::move(v);
    return &slot;
  }
  bool value(json&& v) {
    insert(std::move(v));
    return true;
  }
  bool open(json&& container) {
    std::string k = (!stack_.empty() && stack_.back()->is_object()) ? key_ : std::string();
    json* c = insert(std::move(container));
    stack_.push_back(c);
    keys_.push_back(std::move(k));
    kinds_.push_back(Kind::Dom);
    return true;
  }
  bool close() {
    Kind k = top();
    if (!kinds_.empty()) kinds_.pop_back();
    if (k == Kind::Dom && !stack_.empty()) {
      stack_.pop_back();
      keys_.pop_back();
    }
    return true;
  }
  bool vocab_id(int64_t id) {
    if (id < 0 || id > INT32_MAX - 1)
      return fail("model BPE: vocab id " + std::to_string(id) + " of \"" + key_ + "\" is out of range");
    t_.vocab_text += key_;
    t_.vocab.emplace_back(static_cast<uint32_t>(t_.vocab_text.size()), static_cast<int32_t>(id));
    return true;
  }
  bool bad_merge() {
    return fail("model BPE: merge " + std::to_string(t_.merges.size() + 1) + " is neither \"a b\" nor [a, b]");
  }
  bool fail(const std::string& why) {
    error_ = Error(src_, why);
    return false;
  }

  const std::string& src_;
  json& dom_;
  ModelTables& t_;
  std::vector<json*> stack_;
  std::vector<std::string> keys_;  // key under which each open DOM container sits
  std::vector<Kind> kinds_;
  std::string key_;
  int pair_n_ = 0;
  uint32_t pair_a_end_ = 0;
  std::optional<Error> error_;
};

}  // namespace

void parse_tokenizer_json(const std::string& text, const std::string& src, json& dom, ModelTables& tables) {
  if (text.size() > UINT32_MAX / 2) throw Error(src, "tokenizer.json is too large");
  Handler h(src, dom, tables);
  bool ok = json::sax_parse(text, &h);
  if (h.error()) throw *h.error();
  if (!ok) throw Error(src, "invalid JSON");
}

}  // namespace omni::text::detail
