// The BPE model: vocab, ranked merges, and the per-word merge loop (lowest rank first, leftmost
// first among equal ranks), with a per-word result cache.
#include <algorithm>
#include <queue>

#include "omni/core/error.h"
#include "omni/text/tokenizer_internal.h"

namespace omni::text::detail {

namespace {
constexpr size_t kCacheCapacity = 1 << 16;
constexpr size_t kMaxCachedWordBytes = 256;

std::optional<std::string> optional_string(const json& j, const char* key) {
  if (!j.contains(key) || j[key].is_null()) return std::nullopt;
  return j[key].get<std::string>();
}
}  // namespace

BPE::BPE(const json& model, ModelTables&& t, const std::string& src) : src_(src) {
  if (!t.has_vocab) throw Error(src, "model BPE: expected a \"vocab\" object");

  // All token strings stay in one arena, so the map can key on string_views without copies.
  arena_ = std::move(t.vocab_text);
  int32_t max_id = -1;
  for (const auto& [end, id] : t.vocab) max_id = std::max(max_id, id);
  id_to_tok_.assign(static_cast<size_t>(max_id + 1), std::string_view());
  has_id_.assign(static_cast<size_t>(max_id + 1), false);
  vocab_.reserve(t.vocab.size() * 2);
  uint32_t begin = 0;
  for (const auto& [end, id] : t.vocab) {
    std::string_view tok(arena_.data() + begin, end - begin);
    begin = end;
    vocab_[tok] = id;  // a later duplicate key wins, as in a JSON object
    id_to_tok_[id] = tok;
    has_id_[id] = true;
  }

  unk_token_ = optional_string(model, "unk_token");
  prefix_ = optional_string(model, "continuing_subword_prefix").value_or("");
  suffix_ = optional_string(model, "end_of_word_suffix").value_or("");
  fuse_unk_ = json_bool(model, "fuse_unk", false);
  byte_fallback_ = json_bool(model, "byte_fallback", false);
  ignore_merges_ = json_bool(model, "ignore_merges", false);
  if (model.contains("dropout") && !model["dropout"].is_null() && model["dropout"].get<double>() > 0.0) {
    throw Error(src, "model BPE: dropout is not supported (ids would not be deterministic)");
  }
  for (int b = 0; b < 256; ++b) {
    static const char* hex = "0123456789ABCDEF";
    std::string tok = "<0x";
    tok += hex[b >> 4];
    tok += hex[b & 15];
    tok += '>';
    auto it = vocab_.find(tok);
    byte_ids_[b] = it == vocab_.end() ? -1 : it->second;
  }

  // Merges ("a b" strings or [a, b] pairs, split while streaming); rank = position. A later
  // duplicate wins, as in HF.
  merges_.reserve(t.merges.size() * 2);
  std::string merged;
  uint32_t mbegin = 0;
  for (size_t rank = 0; rank < t.merges.size(); ++rank) {
    auto [a_end, b_end] = t.merges[rank];
    std::string_view a(t.merge_text.data() + mbegin, a_end - mbegin);
    std::string_view b(t.merge_text.data() + a_end, b_end - a_end);
    mbegin = b_end;
    auto ia = vocab_.find(a), ib = vocab_.find(b);
    if (ia == vocab_.end()) throw Error(src, "model BPE: merge token \"" + std::string(a) + "\" is not in the vocab");
    if (ib == vocab_.end()) throw Error(src, "model BPE: merge token \"" + std::string(b) + "\" is not in the vocab");
    merged.assign(a);
    if (b.size() >= prefix_.size()) merged.append(b.substr(prefix_.size()));
    auto in = vocab_.find(merged);
    if (in == vocab_.end()) throw Error(src, "model BPE: merged token \"" + merged + "\" is not in the vocab");
    merges_[key(ia->second, ib->second)] = MergeInfo{static_cast<int32_t>(rank), in->second};
  }
}

std::optional<int32_t> BPE::token_to_id(std::string_view token) const {
  auto it = vocab_.find(token);
  if (it == vocab_.end()) return std::nullopt;
  return it->second;
}

const std::string_view* BPE::id_to_token(int32_t id) const {
  if (id < 0 || static_cast<size_t>(id) >= id_to_tok_.size() || !has_id_[id]) return nullptr;
  return &id_to_tok_[id];
}

void BPE::tokenize(std::string_view word, std::vector<int32_t>& out) const {
  if (word.empty()) return;
  if (ignore_merges_) {
    auto it = vocab_.find(word);
    if (it != vocab_.end()) {
      out.push_back(it->second);
      return;
    }
  }
  bool cacheable = word.size() <= kMaxCachedWordBytes;
  std::string key_str;
  if (cacheable) {
    key_str.assign(word);
    std::shared_lock<std::shared_mutex> lock(cache_mu_);
    auto it = cache_.find(key_str);
    if (it != cache_.end()) {
      out.insert(out.end(), it->second.begin(), it->second.end());
      return;
    }
  }
  std::vector<int32_t> ids;
  merge_word(word, ids);
  out.insert(out.end(), ids.begin(), ids.end());
  if (cacheable) {
    std::unique_lock<std::shared_mutex> lock(cache_mu_);
    if (cache_.size() >= kCacheCapacity) cache_.clear();
    cache_.emplace(std::move(key_str), std::move(ids));
  }
}

void BPE::merge_word(std::string_view word, std::vector<int32_t>& out) const {
  struct Sym {
    int32_t id, prev, next;
  };
  std::vector<Sym> syms;
  syms.reserve(word.size());
  auto push = [&syms](int32_t id) {
    int32_t k = static_cast<int32_t>(syms.size());
    syms.push_back(Sym{id, k - 1, -1});
    if (k > 0) syms[k - 1].next = k;
  };

  int32_t pending_unk = -1;  // an unk waiting to be pushed (fused with following ones)
  std::string buf;
  size_t n = word.size();
  for (size_t i = 0; i < n;) {
    size_t len = std::min(utf8_seq_len(static_cast<unsigned char>(word[i])), n - i);
    size_t end = i + len;
    std::string_view s = word.substr(i, len);
    bool add_prefix = !prefix_.empty() && i != 0, add_suffix = !suffix_.empty() && end == n;
    if (add_prefix || add_suffix) {
      buf.clear();
      if (add_prefix) buf += prefix_;
      buf += s;
      if (add_suffix) buf += suffix_;
      s = buf;
    }
    auto it = vocab_.find(s);
    if (it != vocab_.end()) {
      if (pending_unk >= 0) {
        push(pending_unk);
        pending_unk = -1;
      }
      push(it->second);
    } else {
      bool done = false;
      if (byte_fallback_) {
        bool all = true;
        for (unsigned char c : s) all = all && byte_ids_[c] >= 0;
        if (all) {
          for (unsigned char c : s) push(byte_ids_[c]);
          done = true;
        }
      }
      if (!done && unk_token_) {
        auto u = vocab_.find(*unk_token_);
        if (u == vocab_.end()) throw Error(src_, "model BPE: unk_token \"" + *unk_token_ + "\" is not in the vocab");
        if (pending_unk >= 0 && !fuse_unk_) push(pending_unk);
        if (!(pending_unk >= 0 && fuse_unk_)) pending_unk = u->second;
      }
      // No unk token: the character is dropped, as HF does.
    }
    i = end;
  }
  if (pending_unk >= 0) push(pending_unk);
  if (syms.empty()) return;

  struct Cand {
    int32_t rank, pos, new_id;
    bool operator>(const Cand& o) const { return rank != o.rank ? rank > o.rank : pos > o.pos; }
  };
  std::priority_queue<Cand, std::vector<Cand>, std::greater<Cand>> heap;
  auto consider = [&](int32_t pos) {
    int32_t nx = syms[pos].next;
    if (nx < 0) return;
    auto m = merges_.find(key(syms[pos].id, syms[nx].id));
    if (m != merges_.end()) heap.push(Cand{m->second.rank, pos, m->second.new_id});
  };
  for (int32_t k = 0; k + 1 < static_cast<int32_t>(syms.size()); ++k) consider(k);
  while (!heap.empty()) {
    Cand top = heap.top();
    heap.pop();
    Sym& a = syms[top.pos];
    if (a.id < 0 || a.next < 0) continue;
    Sym& b = syms[a.next];
    auto m = merges_.find(key(a.id, b.id));
    if (m == merges_.end() || m->second.new_id != top.new_id) continue;  // stale candidate
    a.id = top.new_id;
    int32_t after = b.next;
    b.id = -1;
    a.next = after;
    if (after >= 0) syms[after].prev = top.pos;
    if (a.prev >= 0) consider(a.prev);
    consider(top.pos);
  }
  for (int32_t k = 0; k >= 0; k = syms[k].next) out.push_back(syms[k].id);
}

}  // namespace omni::text::detail
