// `omni tokenize`: encode stdin with a tokenizer.json, or decode ids back to text.
//
//   omni tokenize --tokenizer FILE [--no-special]   all of stdin -> one line of space-separated ids
//   omni tokenize --tokenizer FILE --jsonl          each stdin line is a JSON string -> one id line each
//   omni tokenize --tokenizer FILE --decode [--skip-special]
//                                                  whitespace-separated ids -> the text, written as is
//                                                  (no newline added, so encode | decode gives stdin back)
//   omni tokenize --tokenizer FILE --decode --jsonl each line of ids -> one JSON string line
//
// FILE may also be a model directory holding tokenizer.json. Invalid UTF-8 on stdin is encoded as
// if each maximal invalid byte sequence were U+FFFD.
#include <cerrno>
#include <climits>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <iostream>
#include <iterator>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "commands.h"
#include "omni/core/error.h"
#include "omni/text/tokenizer.h"

namespace omni::cli {

namespace {

struct TokenizeOptions {
  std::string tokenizer;
  bool no_special = false;
  bool jsonl = false;
  bool decode = false;
  bool skip_special = false;
};

std::string read_stdin() {
  std::ios::sync_with_stdio(false);
  std::string s((std::istreambuf_iterator<char>(std::cin)), std::istreambuf_iterator<char>());
  if (std::cin.bad()) throw Error("stdin", "read failed");
  return s;
}

void write_stdout(const std::string& s) {
  if (!s.empty() && std::fwrite(s.data(), 1, s.size(), stdout) != s.size()) throw Error("stdout", "write failed");
  if (std::fflush(stdout) != 0) throw Error("stdout", "write failed");
}

void append_ids(const std::vector<int32_t>& ids, std::string& out) {
  for (size_t i = 0; i < ids.size(); ++i) {
    if (i) out += ' ';
    out += std::to_string(ids[i]);
  }
  out += '\n';
}

std::vector<int32_t> parse_ids(const std::string& text, const std::string& where, const text::Tokenizer& tok) {
  std::vector<int32_t> ids;
  std::istringstream in(text);
  std::string w;
  while (in >> w) {
    errno = 0;
    char* end = nullptr;
    long long v = std::strtoll(w.c_str(), &end, 10);
    if (end == w.c_str() || *end != '\0' || errno != 0 || v < INT32_MIN || v > INT32_MAX)
      throw Error(where, "\"" + w + "\" is not a token id");
    auto id = static_cast<int32_t>(v);
    if (!tok.id_to_token(id))
      throw Error(where, "id " + w + " is not in the vocabulary of " + tok.source_name() + " (size " +
                             std::to_string(tok.vocab_size()) + ")");
    ids.push_back(id);
  }
  return ids;
}

// Calls f(line, number) for each line of s; a final line without '\n' counts, an empty tail does not.
template <class F>
void for_each_line(const std::string& s, F f) {
  size_t start = 0, n = 1;
  while (start < s.size()) {
    size_t nl = s.find('\n', start);
    size_t end = nl == std::string::npos ? s.size() : nl;
    std::string line = s.substr(start, end - start);
    if (!line.empty() && line.back() == '\r') line.pop_back();
    f(line, n++);
    if (nl == std::string::npos) break;
    start = nl + 1;
  }
}

int run_tokenize(const TokenizeOptions& o) {
  std::string path = o.tokenizer;
  std::error_code ec;
  if (std::filesystem::is_directory(path, ec)) path = (std::filesystem::path(path) / "tokenizer.json").string();
  const text::Tokenizer tok = text::Tokenizer::from_file(path);
  const std::string input = read_stdin();
  std::string out;
  if (o.decode) {
    if (o.jsonl) {
      for_each_line(input, [&](const std::string& line, size_t n) {
        auto ids = parse_ids(line, "stdin line " + std::to_string(n), tok);
        out += nlohmann::json(tok.decode(ids, o.skip_special)).dump();
        out += '\n';
      });
    } else {
      out = tok.decode(parse_ids(input, "stdin", tok), o.skip_special);
    }
  } else if (o.jsonl) {
    for_each_line(input, [&](const std::string& line, size_t n) {
      std::string text;
      try {
        nlohmann::json j = nlohmann::json::parse(line);
        if (!j.is_string()) throw Error("stdin line " + std::to_string(n), "expected a JSON string, got " + std::string(j.type_name()));
        text = j.get<std::string>();
      } catch (const nlohmann::json::exception& e) {
        throw Error("stdin line " + std::to_string(n), std::string("invalid JSON: ") + e.what());
      }
      append_ids(tok.encode(text, !o.no_special), out);
    });
  } else {
    append_ids(tok.encode(input, !o.no_special), out);
  }
  write_stdout(out);
  return 0;
}

}  // namespace

void add_tokenize_command(CLI::App& app, Runner& run) {
  auto opts = std::make_shared<TokenizeOptions>();
  auto* cmd = app.add_subcommand("tokenize", "encode stdin with a tokenizer.json, or decode ids (--decode)");
  cmd->add_option("--tokenizer", opts->tokenizer, "tokenizer.json (or a directory holding one)")->required();
  auto* decode = cmd->add_flag("--decode", opts->decode, "read whitespace-separated ids, print the text");
  auto* no_special = cmd->add_flag("--no-special", opts->no_special,
                                   "do not add the post-processor's special tokens (BOS, ...)");
  cmd->add_flag("--jsonl", opts->jsonl,
                "one JSON string per stdin line, one id line out per line (with --decode: ids in, JSON strings out)");
  cmd->add_flag("--skip-special", opts->skip_special, "with --decode: leave special tokens out")->needs(decode);
  no_special->excludes(decode);
  cmd->callback([&run, opts] { run = [opts]() -> int { return run_tokenize(*opts); }; });
}

}  // namespace omni::cli
