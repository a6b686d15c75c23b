#include "omni/eval/multiple_choice.h"

#include <cctype>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <set>

#include "omni/core/error.h"
#include "omni/core/strings.h"
#include "omni/io/data_paths.h"

namespace omni::eval {
namespace fs = std::filesystem;
using json = nlohmann::json;

namespace {

const std::string kMarker = "<image>";

bool is_word_char(char c) { return std::isalnum(static_cast<unsigned char>(c)) != 0; }

// Where `needle` occurs in `hay` as a whole word: not inside a longer word at either end (an end
// of the needle that is not a word character needs no boundary there, so "(a)" is found in "x(a)").
std::vector<size_t> word_occurrences(const std::string& hay, const std::string& needle) {
  std::vector<size_t> at;
  if (needle.empty()) return at;
  for (size_t p = hay.find(needle); p != std::string::npos; p = hay.find(needle, p + 1)) {
    const bool left = p == 0 || !is_word_char(hay[p - 1]) || !is_word_char(needle.front());
    const size_t e = p + needle.size();
    const bool right = e == hay.size() || !is_word_char(hay[e]) || !is_word_char(needle.back());
    if (left && right) at.push_back(p);
  }
  return at;
}

bool contains_word(const std::string& hay, const std::string& needle) { return !word_occurrences(hay, needle).empty(); }

// "B", "(B)", "[B]", "B.", "B)", "B:" at the start of `s`; returns the letter's index and sets
// `rest` to what follows, or -1.
int leading_letter(const std::string& s, int n, std::string& rest) {
  size_t i = 0;
  const bool bracket = i < s.size() && (s[i] == '(' || s[i] == '[');
  if (bracket) ++i;
  if (i >= s.size() || s[i] < 'A' || s[i] >= 'A' + n) return -1;
  const int letter = s[i] - 'A';
  ++i;
  bool delimited = false;
  if (i < s.size() && (s[i] == ')' || s[i] == ']' || s[i] == '.' || s[i] == ':')) {
    ++i;
    delimited = true;
  }
  if (bracket && !delimited) return -1;
  if (i < s.size() && is_word_char(s[i])) return -1;  // a word starting with the letter
  rest = trim(s.substr(i));
  if (!rest.empty() && !delimited) return -1;  // "A red circle": an article, not a choice
  return letter;
}

}  // namespace

std::string option_letter(int index) { return std::string(1, static_cast<char>('A' + index)); }

std::vector<McItem> read_multiple_choice(const std::string& file, const std::string& image_root, bool allow_absolute) {
  std::ifstream in(file);
  if (!in) throw Error(file, "cannot open the evaluation file");
  const std::string root = image_root.empty() ? fs::path(file).parent_path().string() : image_root;
  std::vector<McItem> items;
  std::set<std::string> ids;
  int line_no = 0;
  for (std::string line; std::getline(in, line);) {
    ++line_no;
    if (trim(line).empty()) continue;
    McItem it;
    it.where = file + ":" + std::to_string(line_no);
    json j;
    try {
      j = json::parse(line);
    } catch (const json::exception& e) {
      std::string why = e.what();
      if (auto p = why.find("] "); p != std::string::npos) why = why.substr(p + 2);
      throw Error(it.where, "not JSON: " + why);
    }
    if (!j.is_object()) throw Error(it.where, "expected a JSON object");
    auto text = [&](const char* key) -> std::string {
      if (!j.contains(key) || !j[key].is_string() || trim(j[key].get<std::string>()).empty())
        throw Error(it.where, std::string("\"") + key + "\" must be a non-empty string");
      return j[key].get<std::string>();
    };
    it.id = j.contains("id") && j["id"].is_number_integer() ? std::to_string(j["id"].get<int64_t>()) : text("id");
    if (!ids.insert(it.id).second) throw Error(it.where, "id \"" + it.id + "\" appears twice");
    it.question = text("question");
    if (!j.contains("options") || !j["options"].is_array())
      throw Error(it.where, "\"options\" must be a list of strings");
    for (const auto& o : j["options"]) {
      if (!o.is_string() || trim(o.get<std::string>()).empty())
        throw Error(it.where, "\"options\" must be a list of non-empty strings");
      it.options.push_back(trim(o.get<std::string>()));
    }
    const int n = static_cast<int>(it.options.size());
    if (n < 2 || n > 26) throw Error(it.where, "\"options\" must hold 2 to 26 choices, got " + std::to_string(n));
    if (!j.contains("answer")) throw Error(it.where, "no \"answer\"");
    const auto& a = j["answer"];
    if (a.is_number_integer()) {
      it.answer = a.get<int>();
    } else if (a.is_string()) {
      const std::string s = trim(a.get<std::string>());
      if (s.size() == 1 && s[0] >= 'A' && s[0] < 'A' + n) it.answer = s[0] - 'A';
      for (int i = 0; i < n && it.answer < 0; ++i)
        if (ascii_lower(it.options[static_cast<size_t>(i)]) == ascii_lower(s)) it.answer = i;
    }
    if (it.answer < 0 || it.answer >= n)
      throw Error(it.where, "\"answer\" must be an option's letter (A-" + option_letter(n - 1) +
                                "), its text or its index, got " + a.dump());
    std::vector<std::string> images;
    if (j.contains("images")) {
      if (!j["images"].is_array()) throw Error(it.where, "\"images\" must be a list of paths");
      for (const auto& p : j["images"]) {
        if (!p.is_string()) throw Error(it.where, "\"images\" must be a list of paths");
        images.push_back(p.get<std::string>());
      }
    } else if (j.contains("image")) {
      if (!j["image"].is_string()) throw Error(it.where, "\"image\" must be a path");
      images.push_back(j["image"].get<std::string>());
    }
    size_t markers = 0;
    for (size_t p = it.question.find(kMarker); p != std::string::npos; p = it.question.find(kMarker, p + 1)) ++markers;
    if (markers != 0 && markers != images.size())
      throw Error(it.where, "the question has " + std::to_string(markers) + " <image> markers for " +
                                std::to_string(images.size()) + " images");
    for (const auto& p : images) it.images.push_back(io::resolve_data_path(p, root, allow_absolute, it.where, "--allow_absolute_paths"));
    items.push_back(std::move(it));
  }
  if (items.empty()) throw Error(file, "no questions in the evaluation file");
  return items;
}

std::string multiple_choice_prompt(const McItem& item) {
  std::string p;
  if (item.question.find(kMarker) == std::string::npos)
    for (size_t i = 0; i < item.images.size(); ++i) p += kMarker + "\n";
  p += item.question;
  for (size_t i = 0; i < item.options.size(); ++i) p += "\n" + option_letter(static_cast<int>(i)) + ". " + item.options[i];
  return p + "\nAnswer with the option's letter from the given choices directly.";
}

namespace {

// The option letters standing alone in `s` between spaces or punctuation ("the answer is B",
// "Green (C)."), not the article "A" before a word, nor a letter inside a whole-word occurrence
// of `skip` (lower case; "Plan B" when that is the option the answer names) in `low`, the
// answer lower-cased.
std::set<int> standalone_letters(const std::string& s, const std::string& low, int n, const std::string& skip = "") {
  std::vector<bool> skipped(s.size(), false);
  for (size_t p : word_occurrences(low, skip))
    for (size_t i = p; i < p + skip.size(); ++i) skipped[i] = true;
  auto boundary = [&](size_t j) { return j >= s.size() || std::strchr(" \t\r\n.,:;!?()[]\"'", s[j]) != nullptr; };
  std::set<int> letters;
  for (size_t i = 0; i < s.size(); ++i) {
    if (skipped[i] || s[i] < 'A' || s[i] >= 'A' + n) continue;
    if ((i > 0 && !boundary(i - 1)) || !boundary(i + 1)) continue;
    if (s[i] == 'A' && i + 2 < s.size() && s[i + 1] == ' ' && std::islower(static_cast<unsigned char>(s[i + 2]))) continue;
    letters.insert(s[i] - 'A');
  }
  return letters;
}

}  // namespace

int parse_choice(const std::string& answer, const std::vector<std::string>& options) {
  const int n = static_cast<int>(options.size());
  const std::string s = trim(answer);
  std::string rest;
  if (const int l = leading_letter(s, n, rest); l >= 0) return l;
  // the options whose text the answer holds as words; the longest when it contains the others
  const std::string low = ascii_lower(s);
  std::vector<int> hits;
  for (int i = 0; i < n; ++i)
    if (contains_word(low, ascii_lower(options[static_cast<size_t>(i)]))) hits.push_back(i);
  int named = -1;
  if (hits.size() == 1) named = hits[0];
  if (hits.size() > 1) {
    int longest = hits[0];
    for (int h : hits)
      if (options[static_cast<size_t>(h)].size() > options[static_cast<size_t>(longest)].size()) longest = h;
    bool covers = true;
    for (int h : hits) covers = covers && contains_word(ascii_lower(options[static_cast<size_t>(longest)]), ascii_lower(options[static_cast<size_t>(h)]));
    if (!covers) return -1;
    named = longest;
  }
  if (named >= 0) {
    // an answer that names one option in words and another by its letter ("Green (C)." where C
    // is blue) picks neither; letters inside the named option's own text do not count
    const auto letters = standalone_letters(s, low, n, ascii_lower(options[static_cast<size_t>(named)]));
    return letters.empty() || letters == std::set<int>{named} ? named : -1;
  }
  const auto letters = standalone_letters(s, low, n);
  return letters.size() == 1 ? *letters.begin() : -1;
}

}  // namespace omni::eval
