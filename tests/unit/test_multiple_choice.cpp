// omni eval's multiple-choice sets (eval/multiple_choice.h): reading them (and refusing bad
// lines with "file:line: why"), the prompt, and reading a choice back from a free-form answer.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "omni/core/error.h"
#include "omni/eval/multiple_choice.h"
#include "test_paths.h"

using namespace omni;
using namespace omni::eval;
namespace fs = std::filesystem;

namespace {

const std::vector<std::string> kShapes = {"circle", "square", "triangle"};

// A data file in a fresh folder holding one image, a.png.
fs::path write_set(const std::string& name, const std::string& lines) {
  const fs::path dir = fs::temp_directory_path() / ("omni_mc_" + std::to_string(::getpid())) / name;
  fs::create_directories(dir);
  fs::copy_file(fs::path(OMNI_FIXTURES) / "../../examples/train/images/red_circle.png", dir / "a.png", fs::copy_options::overwrite_existing);
  std::ofstream(dir / "set.jsonl") << lines;
  return dir / "set.jsonl";
}

std::string error_of(const std::string& lines) {
  try {
    read_multiple_choice(write_set("bad", lines).string(), "", false);
  } catch (const Error& e) {
    return e.what();
  }
  return "no error";
}

}  // namespace

TEST(MultipleChoice, ReadsLettersTextsAndIndexesAsAnswers) {
  const auto file = write_set("good", R"({"id": "q1", "image": "a.png", "question": "What shape?", "options": ["circle", "square"], "answer": "A"}
{"id": 2, "images": ["a.png"], "question": "Colour of <image>?", "options": ["Red", "blue", "green"], "answer": "red"}

{"id": "q3", "question": "Pick two.", "options": ["one", "two"], "answer": 1}
)");
  const auto items = read_multiple_choice(file.string(), "", false);
  ASSERT_EQ(items.size(), 3u);
  EXPECT_EQ(items[0].answer, 0);
  EXPECT_EQ(items[0].images, std::vector<std::string>{(file.parent_path() / "a.png").string()});
  EXPECT_EQ(items[1].id, "2");
  EXPECT_EQ(items[1].answer, 0);  // the option's text, any case
  EXPECT_EQ(items[2].answer, 1);
  EXPECT_TRUE(items[2].images.empty());
  EXPECT_EQ(items[2].where, file.string() + ":4");
}

TEST(MultipleChoice, PromptListsTheOptionsByLetter) {
  McItem it;
  it.images = {"a.png"};
  it.question = "What shape is this?";
  it.options = kShapes;
  EXPECT_EQ(multiple_choice_prompt(it),
            "<image>\nWhat shape is this?\nA. circle\nB. square\nC. triangle\n"
            "Answer with the option's letter from the given choices directly.");
  it.question = "Is <image> round?";  // a marker places the image itself
  it.options = {"yes", "no"};
  EXPECT_EQ(multiple_choice_prompt(it),
            "Is <image> round?\nA. yes\nB. no\nAnswer with the option's letter from the given choices directly.");
}

TEST(MultipleChoice, ParsesLettersOptionTextsAndRefusesGuesses) {
  EXPECT_EQ(parse_choice("B", kShapes), 1);
  EXPECT_EQ(parse_choice(" (C) ", kShapes), 2);
  EXPECT_EQ(parse_choice("A.", kShapes), 0);
  EXPECT_EQ(parse_choice("B. square", kShapes), 1);
  EXPECT_EQ(parse_choice("A red triangle.", kShapes), 2);       // "A" is an article here
  EXPECT_EQ(parse_choice("It is a Square", kShapes), 1);        // the option's text, any case
  EXPECT_EQ(parse_choice("The answer is C", kShapes), 2);       // one letter standing alone
  EXPECT_EQ(parse_choice("dk\xef=C\xbf", kShapes), -1);          // not in noise
  EXPECT_EQ(parse_choice("D", kShapes), -1);                    // no fourth option
  EXPECT_EQ(parse_choice("a circle or a square", kShapes), -1);  // two options named
  EXPECT_EQ(parse_choice("squares", kShapes), -1);              // not the word
  EXPECT_EQ(parse_choice("", kShapes), -1);
  EXPECT_EQ(parse_choice("Blue", {"red", "blue"}), 1);          // not the letter B
  // one option inside another: the longer one when the answer names it
  EXPECT_EQ(parse_choice("a dark red circle", {"red", "dark red"}), 1);
  // the answer's words and its letter must agree
  EXPECT_EQ(parse_choice("A circle (A).", kShapes), 0);
  EXPECT_EQ(parse_choice("A circle (B).", kShapes), -1);
  EXPECT_EQ(parse_choice("A square.", kShapes), 1);  // the article is no verdict for option A
  EXPECT_EQ(parse_choice("Square, so the answer is B.", kShapes), 1);
  EXPECT_EQ(parse_choice("On the left (C).", {"top", "right", "left"}), 2);
  EXPECT_EQ(parse_choice("Plan B (B)", {"Plan A", "Plan B"}), 1);  // the option's own letter is not a verdict
}

TEST(MultipleChoice, BadLinesAreOneErrorNamingTheLine) {
  EXPECT_NE(error_of("{\"id\": \"q\", \"question\": \"?\", \"options\": [\"a\", \"b\"], \"answer\": \"A\"}\nnot json\n")
                .find("set.jsonl:2: not JSON"),
            std::string::npos);
  EXPECT_NE(error_of(R"({"id": "q", "question": "?", "options": ["a"], "answer": "A"})").find("2 to 26 choices, got 1"),
            std::string::npos);
  EXPECT_NE(error_of(R"({"id": "q", "question": "?", "options": ["a", "b"], "answer": "C"})")
                .find("\"answer\" must be an option's letter (A-B)"),
            std::string::npos);
  EXPECT_NE(error_of(R"({"id": "q", "options": ["a", "b"], "answer": "A"})").find("\"question\" must be a non-empty string"),
            std::string::npos);
  EXPECT_NE(error_of(R"({"id": "q", "image": "../a.png", "question": "?", "options": ["a", "b"], "answer": "A"})")
                .find("'..' is refused (set --allow_absolute_paths)"),
            std::string::npos);
  EXPECT_NE(error_of(R"({"id": "q", "image": "b.png", "question": "?", "options": ["a", "b"], "answer": "A"})")
                .find("image 'b.png': no such file"),
            std::string::npos);
  EXPECT_NE(error_of(R"({"id": "q", "image": "a.png", "question": "<image> <image>", "options": ["a", "b"], "answer": "A"})")
                .find("2 <image> markers for 1 images"),
            std::string::npos);
  const std::string twice = R"({"id": "q", "question": "?", "options": ["a", "b"], "answer": "A"})";
  EXPECT_NE(error_of(twice + "\n" + twice).find("id \"q\" appears twice"), std::string::npos);
  EXPECT_NE(error_of("\n").find("no questions"), std::string::npos);
}
