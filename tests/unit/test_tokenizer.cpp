// Tokenizer tests: ids and decodes identical to Hugging Face `tokenizers` on the corpus, for the
// real tokenizer.json files (qwen3, deepseek_v3, llama3), the toy-model fixtures (janus_tiny,
// bagel_tiny) and synthetic files covering the other supported features. The expected values come
// from scripts/dev/tokenizer_reference.js (the native HF library); these tests never run node.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <sstream>
#include <thread>

#include <nlohmann/json.hpp>

#include "omni/core/error.h"
#include "omni/text/tokenizer.h"
#include "test_paths.h"

namespace {

using nlohmann::json;
using omni::text::Tokenizer;

std::string fixture(const std::string& rel) { return std::string(OMNI_FIXTURES) + "/" + rel; }

std::string tokenizer_path(const std::string& name) {
  if (name == "qwen3" || name == "deepseek_v3" || name == "llama3")
    return std::string(OMNI_THIRD_PARTY) + "/tokenizers/" + name + ".json";
  if (name == "janus_tiny" || name == "bagel_tiny") return fixture(name + "/tokenizer.json");
  return fixture("tokenizer/synth/" + name + ".json");
}

std::string read_file(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) throw std::runtime_error("missing test input " + path + " (run scripts/fetch_tokenizers.sh for third_party files)");
  std::ostringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

std::vector<json> read_jsonl(const std::string& path) {
  std::vector<json> rows;
  std::istringstream in(read_file(path));
  std::string line;
  while (std::getline(in, line))
    if (!line.empty()) rows.push_back(json::parse(line));
  return rows;
}

// Loaded once per process: the big files take a moment to parse.
const Tokenizer& load(const std::string& name) {
  static std::mutex mu;
  static std::map<std::string, std::unique_ptr<Tokenizer>> cache;
  std::lock_guard<std::mutex> lock(mu);
  auto& slot = cache[name];
  if (!slot) slot = std::make_unique<Tokenizer>(Tokenizer::from_file(tokenizer_path(name)));
  return *slot;
}

std::vector<std::string> corpus() {
  std::vector<std::string> out;
  for (const auto& j : read_jsonl(fixture("tokenizer/corpus.jsonl"))) out.push_back(j.get<std::string>());
  return out;
}

std::string show(const std::string& s) { return json(s).dump(); }

std::string show(const std::vector<int32_t>& v) {
  std::string out = "[";
  for (size_t i = 0; i < v.size(); ++i) out += (i ? "," : "") + std::to_string(v[i]);
  return out + "]";
}

std::string hex_to_bytes(const std::string& hex) {
  std::string out;
  for (size_t i = 0; i + 1 < hex.size(); i += 2) out.push_back(static_cast<char>(std::stoi(hex.substr(i, 2), nullptr, 16)));
  return out;
}

const char* const kAllTokenizers[] = {"qwen3",           "deepseek_v3",  "llama3",        "janus_tiny",
                                      "bagel_tiny",      "synth_bytelevel", "synth_split", "synth_split2",
                                      "synth_spm",       "synth_unk",    "synth_unk_nofuse", "synth_prefix"};

// ------------------------------------------------------------------ corpus vs HF ----

class TokenizerCorpus : public ::testing::TestWithParam<std::string> {};

TEST_P(TokenizerCorpus, MatchesHuggingFace) {
  const std::string name = GetParam();
  const Tokenizer& tok = load(name);
  const auto lines = corpus();
  const auto expected = read_jsonl(fixture("tokenizer/" + name + ".expected.jsonl"));
  ASSERT_EQ(lines.size(), expected.size()) << "regenerate with scripts/dev/tokenizer_reference.js";
  ASSERT_GE(lines.size(), 150u);
  size_t matched = 0, round_trips = 0, failures = 0;
  for (size_t i = 0; i < lines.size(); ++i) {
    const std::string& text = lines[i];
    const json& e = expected[i];
    auto with = tok.encode(text, true);
    auto without = tok.encode(text, false);
    auto want_with = e["with_special"].get<std::vector<int32_t>>();
    auto want_without = e["no_special"].get<std::vector<int32_t>>();
    bool ok = true;
    if (with != want_with) {
      ok = false;
      ADD_FAILURE() << name << " line " << i + 1 << " " << show(text) << "\n  add_special_tokens=true\n  ours: "
                    << show(with) << "\n  HF:   " << show(want_with);
    }
    if (without != want_without) {
      ok = false;
      ADD_FAILURE() << name << " line " << i + 1 << " " << show(text) << "\n  add_special_tokens=false\n  ours: "
                    << show(without) << "\n  HF:   " << show(want_without);
    }
    // Decoding HF's ids must give HF's text: with and without skip_special_tokens, for the ids
    // without special tokens, and for a prefix of the ids (which cuts multi-byte characters apart).
    // Fields the script leaves out equal the corpus line / the previous field.
    const std::string want_decode = e.value("decode", text);
    const std::string want_plain = e.value("decode_plain", want_decode);
    std::vector<int32_t> half(want_with.begin(), want_with.begin() + want_with.size() / 2);
    const std::pair<std::string, std::string> decodes[] = {
        {tok.decode(want_with, false), want_decode},
        {tok.decode(want_with, true), e.value("decode_skip", want_decode)},
        {tok.decode(want_without, false), want_plain},
        {tok.decode(half, false), e["decode_half"].get<std::string>()},
    };
    const char* what[] = {"decode", "decode(skip_special_tokens)", "decode(no_special ids)", "decode(first half)"};
    for (int k = 0; k < 4; ++k) {
      if (decodes[k].first != decodes[k].second) {
        ok = false;
        ADD_FAILURE() << name << " line " << i + 1 << " " << show(text) << "\n  " << what[k]
                      << "\n  ours: " << show(decodes[k].first) << "\n  HF:   " << show(decodes[k].second);
      }
    }
    // decode(encode(x)) == x wherever HF's does.
    if (want_plain == text) {
      EXPECT_EQ(tok.decode(tok.encode(text, false), false), text) << name << " line " << i + 1;
      ++round_trips;
    }
    if (ok) ++matched;
    if (!ok && ++failures >= 10) {
      ADD_FAILURE() << name << ": stopping after 10 mismatching lines";
      break;
    }
  }
  EXPECT_EQ(matched, lines.size());
  std::printf("[ tokenizer ] %-16s %zu/%zu corpus lines identical to HF (ids with and without special tokens, 4 decodes); "
              "%zu lines round-trip as in HF\n",
              name.c_str(), matched, lines.size(), round_trips);
}

INSTANTIATE_TEST_SUITE_P(Tokenizer, TokenizerCorpus, ::testing::ValuesIn(std::vector<std::string>(std::begin(kAllTokenizers), std::end(kAllTokenizers))),
                         [](const ::testing::TestParamInfo<std::string>& p) { return p.param; });

// --------------------------------------------------------------- invalid UTF-8 ----

TEST(TokenizerUtf8, InvalidBytesBecomeReplacementCharacters) {
  // The rule of Rust's from_utf8_lossy / Node's Buffer.toString: one U+FFFD per maximal invalid
  // subsequence.
  const std::string fffd = "\xEF\xBF\xBD";
  EXPECT_EQ(omni::text::sanitize_utf8("a\xFF" "b"), "a" + fffd + "b");
  EXPECT_EQ(omni::text::sanitize_utf8("\xED\xA0\x80"), fffd + fffd + fffd);  // a surrogate
  EXPECT_EQ(omni::text::sanitize_utf8("\xE2\x82"), fffd);                     // truncated
  EXPECT_EQ(omni::text::sanitize_utf8("\xE2\x82" "A"), fffd + "A");
  EXPECT_EQ(omni::text::sanitize_utf8("\xC0\xAF"), fffd + fffd);              // overlong
  EXPECT_EQ(omni::text::sanitize_utf8("\xF4\x90\x80\x80"), fffd + fffd + fffd + fffd);  // > U+10FFFF
  EXPECT_EQ(omni::text::sanitize_utf8("h\xC3\xA9llo \xF0\x9F\x98\x80"), "h\xC3\xA9llo \xF0\x9F\x98\x80");
  EXPECT_EQ(omni::text::sanitize_utf8(std::string("a\0b", 3)), std::string("a\0b", 3));
}

TEST(TokenizerUtf8, InvalidInputMatchesHFOnTheReplacedString) {
  const auto rows = read_jsonl(fixture("tokenizer/invalid_utf8.expected.jsonl"));
  ASSERT_GE(rows.size(), 10u);
  size_t compared = 0;
  for (const auto& row : rows) {
    const std::string bytes = hex_to_bytes(row["hex"].get<std::string>());
    for (const char* name : kAllTokenizers) {
      auto want = row.at(name).get<std::vector<int32_t>>();
      EXPECT_EQ(load(name).encode(bytes, false), want) << name << " bytes " << row["hex"];
      EXPECT_EQ(load(name).encode(bytes, false), load(name).encode(omni::text::sanitize_utf8(bytes), false));
      (void)load(name).decode(load(name).encode(bytes, true));  // must not throw
      ++compared;
    }
  }
  std::printf("[ tokenizer ] %zu invalid-UTF-8 inputs x tokenizers identical to HF\n", compared);
}

TEST(TokenizerUtf8, DecodeOfArbitraryIdsNeverThrows) {
  const Tokenizer& tok = load("qwen3");
  // Lone continuation bytes and cut characters decode to U+FFFD; unknown ids are skipped.
  std::vector<int32_t> ids;
  for (int32_t id = 0; id < 300; ++id) ids.push_back(id);
  ids.push_back(-5);
  ids.push_back(99999999);
  std::string s = tok.decode(ids);
  EXPECT_FALSE(s.empty());
  EXPECT_EQ(omni::text::sanitize_utf8(s), s);
  EXPECT_EQ(tok.decode({-1, 1 << 30}), "");
}

// --------------------------------------------------------------- model fixtures ----

// Janus replaces each <image_placeholder> with <begin_of_image>, 576 x <image_placeholder>,
// <end_of_image>.
std::vector<int32_t> expand_image_slots(const std::vector<int32_t>& ids, int32_t placeholder, int32_t begin,
                                        int32_t end, size_t n) {
  std::vector<int32_t> out;
  for (int32_t id : ids) {
    if (id != placeholder) {
      out.push_back(id);
      continue;
    }
    out.push_back(begin);
    out.insert(out.end(), n, placeholder);
    out.push_back(end);
  }
  return out;
}

TEST(TokenizerModels, JanusTinyReproducesTheOfficialPromptIds) {
  const json e = json::parse(read_file(fixture("tokenizer/janus_tiny_expected.json")));
  const Tokenizer& tok = load("janus_tiny");
  int32_t ph = tok.require_token_id("<image_placeholder>");
  int32_t boi = tok.require_token_id("<begin_of_image>");
  int32_t eoi = tok.require_token_id("<end_of_image>");
  EXPECT_EQ(ph, 4);
  EXPECT_EQ(boi, 5);
  EXPECT_EQ(eoi, 6);
  size_t n = e["image_tokens_per_image"].get<size_t>();

  auto und = expand_image_slots(tok.encode(e["understanding"]["sft_format"].get<std::string>(), true), ph, boi, eoi, n);
  EXPECT_EQ(und, e["understanding"]["input_ids"].get<std::vector<int32_t>>());
  EXPECT_EQ(und.size(), 814u);

  auto t2i = tok.encode(e["t2i"]["prompt"].get<std::string>(), true);
  EXPECT_EQ(t2i, e["t2i"]["prompt_ids"].get<std::vector<int32_t>>());
  EXPECT_EQ(t2i.size(), 58u);

  auto loss = expand_image_slots(tok.encode(e["losses"]["und_prompt"].get<std::string>(), true), ph, boi, eoi, n);
  EXPECT_EQ(loss, e["losses"]["und_input_ids"].get<std::vector<int32_t>>());
  EXPECT_EQ(tok.encode("x", true).front(), tok.require_token_id("<\xEF\xBD\x9C" "begin\xE2\x96\x81of\xE2\x96\x81sentence\xEF\xBD\x9C>"));
}

TEST(TokenizerModels, BagelTinyReproducesTheOfficialPromptIds) {
  const json e = json::parse(read_file(fixture("tokenizer/bagel_tiny_expected.json")));
  const Tokenizer& tok = load("bagel_tiny");
  int32_t start = tok.require_token_id("<|im_start|>"), end = tok.require_token_id("<|im_end|>");
  EXPECT_EQ(start, 501);
  EXPECT_EQ(end, 502);
  for (const auto& b : e["blocks"]) {
    std::vector<int32_t> ids{start};
    auto body = tok.encode(b["prompt"].get<std::string>(), true);  // adds no BOS/EOS
    ids.insert(ids.end(), body.begin(), body.end());
    ids.push_back(end);
    EXPECT_EQ(ids, b["ids"].get<std::vector<int32_t>>()) << b["use"];
  }
  EXPECT_EQ(tok.decode(e["greedy_tokens"].get<std::vector<int32_t>>(), true), e["decoded_text"].get<std::string>());
  EXPECT_EQ(tok.vocab_size(), 512u);
}

// ---------------------------------------------------------------------- lookup ----

TEST(TokenizerLookup, TokenIds) {
  const Tokenizer& tok = load("qwen3");
  EXPECT_EQ(tok.require_token_id("<|vision_start|>"), 151652);
  EXPECT_EQ(tok.require_token_id("<|im_start|>"), 151644);
  EXPECT_EQ(tok.token_to_id("hello"), std::optional<int32_t>(14990));
  EXPECT_EQ(tok.id_to_token(151652), std::optional<std::string>("<|vision_start|>"));
  EXPECT_EQ(tok.id_to_token(14990), std::optional<std::string>("hello"));
  EXPECT_FALSE(tok.id_to_token(-1).has_value());
  EXPECT_FALSE(tok.id_to_token(10000000).has_value());
  EXPECT_FALSE(tok.token_to_id("<|no_such_token|>").has_value());
  EXPECT_EQ(tok.vocab_size(), 151669u);
  EXPECT_TRUE(tok.is_special(151644));
  EXPECT_FALSE(tok.is_special(151657));  // <tool_call> is an added, non-special token
  EXPECT_FALSE(tok.is_special(14990));
  EXPECT_EQ(tok.added_tokens().size(), 26u);
  try {
    tok.require_token_id("<|no_such_token|>");
    FAIL() << "expected omni::Error";
  } catch (const omni::Error& e) {
    std::string msg = e.what();
    EXPECT_NE(msg.find("<|no_such_token|>"), std::string::npos) << msg;
    EXPECT_NE(msg.find("qwen3.json"), std::string::npos) << msg;
  }
  EXPECT_EQ(load("deepseek_v3").vocab_size(), 128815u);
  EXPECT_EQ(load("llama3").require_token_id("<|begin_of_text|>"), 128000);
}

TEST(TokenizerLookup, EncodeTokens) {
  auto toks = load("qwen3").encode_tokens("Hello <|im_start|> world");
  EXPECT_EQ(toks, (std::vector<std::string>{"Hello", "\xC4\xA0", "<|im_start|>", "\xC4\xA0world"}));
}

TEST(TokenizerLookup, CopiesShareTheLoadedData) {
  Tokenizer a = load("bagel_tiny");
  Tokenizer b = a;
  Tokenizer c = std::move(a);
  EXPECT_EQ(b.encode("hi"), c.encode("hi"));
}

// ---------------------------------------------------------------------- errors ----

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const omni::Error& e) {
    return e.what();
  }
  return "<no omni::Error>";
}

std::string small_json(const std::function<void(json&)>& edit) {
  json j = json::parse(read_file(tokenizer_path("bagel_tiny")));
  edit(j);
  return j.dump();
}

TEST(TokenizerErrors, MissingFile) {
  std::string msg = error_of([] { Tokenizer::from_file("/nonexistent/dir/tokenizer.json"); });
  EXPECT_NE(msg.find("/nonexistent/dir/tokenizer.json"), std::string::npos) << msg;
  EXPECT_NE(msg.find("cannot open"), std::string::npos) << msg;
}

TEST(TokenizerErrors, BadJson) {
  std::string msg = error_of([] { Tokenizer::from_json_string("{\"model\": [1, 2", "broken.json"); });
  EXPECT_EQ(msg.rfind("broken.json: invalid JSON", 0), 0u) << msg;
  msg = error_of([] { Tokenizer::from_json_string("[1, 2]", "array.json"); });
  EXPECT_NE(msg.find("array.json"), std::string::npos) << msg;
  msg = error_of([] { Tokenizer::from_json_string("{}", "empty.json"); });
  EXPECT_NE(msg.find("model"), std::string::npos) << msg;
  msg = error_of([] {
    Tokenizer::from_json_string(small_json([](json& j) { j["model"]["vocab"] = "nope"; }), "v.json");
  });
  EXPECT_NE(msg.find("v.json"), std::string::npos) << msg;
  msg = error_of([] {
    Tokenizer::from_json_string(small_json([](json& j) { j["added_tokens"][0]["content"] = 5; }), "t.json");
  });
  EXPECT_NE(msg.find("t.json: invalid tokenizer.json"), std::string::npos) << msg;
}

TEST(TokenizerErrors, UnknownComponentTypesAreNamed) {
  struct Case {
    const char* key;
    json value;
  };
  const Case cases[] = {
      {"pre_tokenizer", {{"type", "Frobnicate"}}},
      {"normalizer", {{"type", "Lowercase"}}},
      {"decoder", {{"type", "WordPiece"}, {"prefix", "##"}}},
      {"post_processor", {{"type", "Mystery"}}},
      {"pre_tokenizer", {{"type", "Sequence"}, {"pretokenizers", {{{"type", "BertPreTokenizer"}}}}}},
  };
  for (const auto& c : cases) {
    std::string type = c.value["type"] == "Sequence" ? "BertPreTokenizer" : c.value["type"].get<std::string>();
    std::string msg = error_of([&] {
      Tokenizer::from_json_string(small_json([&](json& j) { j[c.key] = c.value; }), "tests/my_tokenizer.json");
    });
    EXPECT_NE(msg.find("tests/my_tokenizer.json"), std::string::npos) << msg;
    EXPECT_NE(msg.find("\"" + type + "\""), std::string::npos) << msg;
    EXPECT_NE(msg.find(c.key), std::string::npos) << msg;
  }
  std::string msg = error_of([] {
    Tokenizer::from_json_string(small_json([](json& j) { j["model"]["type"] = "Unigram"; }), "u.json");
  });
  EXPECT_EQ(msg, "u.json: unsupported model type \"Unigram\"");
}

TEST(TokenizerErrors, BadModelContents) {
  std::string msg = error_of([] {
    Tokenizer::from_json_string(small_json([](json& j) { j["model"]["merges"] = {"a zz"}; }), "m.json");
  });
  EXPECT_NE(msg.find("\"zz\" is not in the vocab"), std::string::npos) << msg;
  msg = error_of([] {
    Tokenizer::from_json_string(small_json([](json& j) { j["model"]["merges"] = {"a b c"}; }), "m.json");
  });
  EXPECT_NE(msg.find("merge 1"), std::string::npos) << msg;
  msg = error_of([] {
    Tokenizer::from_json_string(small_json([](json& j) {
      j["pre_tokenizer"] = {{"type", "Split"}, {"pattern", {{"Regex", "(unclosed"}}}, {"behavior", "Isolated"}};
    }), "r.json");
  });
  EXPECT_NE(msg.find("(unclosed"), std::string::npos) << msg;
  msg = error_of([] {
    Tokenizer::from_json_string(small_json([](json& j) {
      j["pre_tokenizer"] = {{"type", "Split"}, {"pattern", {{"String", "x"}}}, {"behavior", "Sideways"}};
    }), "r.json");
  });
  EXPECT_NE(msg.find("Sideways"), std::string::npos) << msg;
}

// ------------------------------------------------------------- behaviour notes ----

TEST(TokenizerBehavior, AddedTokenIdsFollowHFAssignmentNotTheFileField) {
  // HF gives a token that is not in the model vocab the next free id, whatever "id" says.
  std::string js = small_json([](json& j) {
    j["added_tokens"] = json::array();
    j["added_tokens"].push_back({{"id", 9999}, {"content", "<new>"}, {"special", true}, {"normalized", false},
                                 {"lstrip", false}, {"rstrip", false}, {"single_word", false}});
    j["added_tokens"].push_back({{"id", 7}, {"content", "<id300>"}, {"special", false}, {"normalized", false},
                                 {"lstrip", false}, {"rstrip", false}, {"single_word", false}});
  });
  Tokenizer tok = Tokenizer::from_json_string(js, "ids.json");
  EXPECT_EQ(tok.require_token_id("<new>"), 512);     // vocab holds 512 entries
  EXPECT_EQ(tok.require_token_id("<id300>"), 300);  // already in the vocab
  EXPECT_EQ(tok.encode("a<new>b<id300>"), (std::vector<int32_t>{97, 512, 98, 300}));
}

TEST(TokenizerBehavior, DecoderQuirksMatchHF) {
  // Expected strings from HF tokenizers 0.22 on the same JSON.
  json j = {{"model", {{"type", "BPE"},
                       {"vocab", {{"\xE2\x96\x81" "a" "\xE2\x96\x81" "b", 0}, {"\xE2\x96\x81" "c", 1},
                                  {"<0xE2>", 2}, {"<0x82>", 3}, {"x", 4}}},
                       {"merges", json::array()}}}};
  // Metaspace drops every replacement character of the first token, not only a leading one.
  j["decoder"] = {{"type", "Metaspace"}, {"replacement", "\xE2\x96\x81"}, {"prepend_scheme", "first"}, {"split", true}};
  EXPECT_EQ(Tokenizer::from_json_string(j.dump(), "q.json").decode({0, 1, 0}), "ab c a b");
  // ByteFallback: a byte run that is not UTF-8 becomes one U+FFFD per byte.
  j["decoder"] = {{"type", "Sequence"}, {"decoders", {{{"type", "ByteFallback"}}, {{"type", "Fuse"}}}}};
  EXPECT_EQ(Tokenizer::from_json_string(j.dump(), "q.json").decode({4, 2, 3, 4, 2, 4}),
            "x\xEF\xBF\xBD\xEF\xBF\xBDx\xEF\xBF\xBDx");
  // Strip removes at most `start` leading and `stop` trailing copies of its character per token.
  j["decoder"] = {{"type", "Strip"}, {"content", "\xE2\x96\x81"}, {"start", 2}, {"stop", 1}};
  EXPECT_EQ(Tokenizer::from_json_string(j.dump(), "q.json").decode({0, 1}), "a\xE2\x96\x81" "bc");
  // No decoder: tokens joined with spaces.
  j.erase("decoder");
  EXPECT_EQ(Tokenizer::from_json_string(j.dump(), "q.json").decode({4, 4}), "x x");
}

TEST(TokenizerBehavior, ThreadsShareOneTokenizer) {
  const Tokenizer& tok = load("qwen3");
  const auto lines = corpus();
  std::vector<std::vector<int32_t>> want;
  for (const auto& l : lines) want.push_back(tok.encode(l));
  std::atomic<int> bad{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      for (size_t k = 0; k < lines.size(); ++k) {
        size_t i = (k * 7 + static_cast<size_t>(t) * 31) % lines.size();
        if (tok.encode(lines[i]) != want[i]) ++bad;
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(bad.load(), 0);
}

TEST(TokenizerBehavior, LongInputs) {
  // Long runs stress the regexes (backtracking, JIT stack) and the merge loop.
  const Tokenizer& tok = load("qwen3");
  std::string spaces(200000, ' ');
  auto ids = tok.encode(spaces + "x");
  EXPECT_EQ(tok.decode(ids), spaces + "x");
  std::string word(100000, 'q');
  EXPECT_EQ(tok.decode(tok.encode(word)), word);
  std::string digits(50000, '7');
  EXPECT_EQ(tok.encode(digits).size(), 50000u);  // qwen3 splits every digit
  EXPECT_EQ(load("llama3").encode(digits).size(), 16667u);  // llama3: groups of three
}

TEST(TokenizerBehavior, RandomBytesAndIdsNeverBreakAnything) {
  // Deterministic fuzzing: random byte strings (mostly invalid UTF-8, with pieces of special
  // tokens and whitespace mixed in) and random id lists, through every tokenizer.
  uint64_t state = 0x9E3779B97F4A7C15ull;
  auto next = [&state] {
    state ^= state << 13;
    state ^= state >> 7;
    state ^= state << 17;
    return state;
  };
  const char* pieces[] = {"<|im_start|>", "<|endoftext|>", "<\xEF\xBD\x9C", "\xE2\x96\x81", " ", "\n", "\r\n",
                          "'s", "\xF0\x9F\x98", "\xCC\x81", "<s>", "<mask>", "[NL]", "12345", "\xE3\x80\x80"};
  for (const char* name : kAllTokenizers) {
    const Tokenizer& tok = load(name);
    for (int round = 0; round < 300; ++round) {
      std::string s;
      size_t len = next() % 64;
      for (size_t i = 0; i < len; ++i) {
        if (next() % 4 == 0) s += pieces[next() % (sizeof pieces / sizeof *pieces)];
        else s.push_back(static_cast<char>(next() % 256));
      }
      std::vector<int32_t> ids;
      ASSERT_NO_THROW(ids = tok.encode(s, round % 2 == 0)) << name;
      EXPECT_EQ(ids, tok.encode(omni::text::sanitize_utf8(s), round % 2 == 0)) << name;
      std::string d = tok.decode(ids, round % 3 == 0);
      EXPECT_EQ(omni::text::sanitize_utf8(d), d) << name;
      std::vector<int32_t> rnd;
      for (size_t i = 0, n = next() % 32; i < n; ++i)
        rnd.push_back(static_cast<int32_t>(next() % (tok.vocab_size() + 16)) - 8);
      d = tok.decode(rnd, round % 2 == 0);
      EXPECT_EQ(omni::text::sanitize_utf8(d), d) << name;
    }
  }
}

// ------------------------------------------------------------------- throughput ----

TEST(TokenizerPerformance, OneMegabyteOfEnglish) {
  // Varied English-like text: corpus prose lines with numbers mixed in so words repeat as in
  // real text but not all of them.
  std::vector<std::string> prose;
  for (const auto& l : corpus()) {
    bool ascii = true;
    for (unsigned char c : l) ascii = ascii && c < 0x80;
    if (ascii && l.size() > 40 && l.size() < 400) prose.push_back(l);
  }
  ASSERT_FALSE(prose.empty());
  std::string text;
  for (size_t i = 0; text.size() < (1u << 20); ++i) {
    text += prose[i % prose.size()];
    text += " (" + std::to_string(i * 7919 % 100000) + ")\n";
  }
  for (const char* name : {"qwen3", "llama3", "deepseek_v3"}) {
    const Tokenizer& tok = load(name);
    auto t0 = std::chrono::steady_clock::now();
    auto ids = tok.encode(text, false);
    double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    std::printf("[ tokenizer ] %-12s encoded %.2f MB -> %zu ids in %.3f s (%.1f MB/s)\n", name,
                static_cast<double>(text.size()) / 1e6, ids.size(), s, static_cast<double>(text.size()) / 1e6 / s);
    EXPECT_EQ(tok.decode(ids), text);
    EXPECT_LT(s, 10.0);  // generous: Debug builds and a loaded machine
  }
}

}  // namespace
