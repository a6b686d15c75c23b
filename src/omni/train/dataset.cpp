#include "omni/train/dataset.h"

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "omni/core/error.h"
#include "omni/core/log.h"
#include "omni/io/data_paths.h"

namespace omni::train {
namespace fs = std::filesystem;
using json = nlohmann::json;

namespace {

const std::string kMarker = "<image>";

size_t count_markers(const std::string& s) {
  size_t n = 0;
  for (size_t p = s.find(kMarker); p != std::string::npos; p = s.find(kMarker, p + kMarker.size())) ++n;
  return n;
}

std::string role_of(const std::string& r) {
  if (r == "human" || r == "user") return "user";
  if (r == "gpt" || r == "assistant") return "assistant";
  if (r == "system") return "system";
  return "";
}

}  // namespace

DataSample parse_sample(const std::string& line, const std::string& where, const std::string& image_root,
                        bool allow_absolute_paths) {
  json j;
  try {
    j = json::parse(line);
  } catch (const json::exception& e) {
    std::string why = e.what();
    if (auto p = why.find("] "); p != std::string::npos) why = why.substr(p + 2);  // drop "[json.exception...]"
    throw Error(where, "not valid JSON: " + why);
  }
  if (!j.is_object()) throw Error(where, "expected a JSON object");
  DataSample s;
  s.where = where;
  if (j.contains("id")) s.id = j["id"].is_string() ? j["id"].get<std::string>() : j["id"].dump();

  const bool sharegpt = j.contains("conversations");
  const char* list_key = sharegpt ? "conversations" : "messages";
  if (!j.contains(list_key)) throw Error(where, "no \"conversations\" or \"messages\" list");
  const json& turns = j[list_key];
  if (!turns.is_array() || turns.empty()) throw Error(where, std::string("\"") + list_key + "\" must be a non-empty list");

  std::vector<std::string> images;
  if (j.contains("images")) {
    if (!j["images"].is_array()) throw Error(where, "\"images\" must be a list of paths");
    for (const auto& e : j["images"]) {
      if (!e.is_string()) throw Error(where, "\"images\" must be a list of paths");
      images.push_back(e.get<std::string>());
    }
  }
  if (j.contains("image")) {
    if (!images.empty()) throw Error(where, "both \"image\" and \"images\" are given");
    if (!j["image"].is_string()) throw Error(where, "\"image\" must be a path");
    images.push_back(j["image"].get<std::string>());
  }

  if (j.contains("image_roles")) {
    if (!j["image_roles"].is_array()) throw Error(where, "\"image_roles\" must be a list of strings");
    for (const auto& e : j["image_roles"]) {
      if (!e.is_string()) throw Error(where, "\"image_roles\" must be a list of strings");
      s.image_roles.push_back(e.get<std::string>());
    }
    if (s.image_roles.size() != images.size())
      throw Error(where, std::to_string(s.image_roles.size()) + " image_roles for " + std::to_string(images.size()) +
                             " image(s)");
  }

  const char* role_key = sharegpt ? "from" : "role";
  const char* text_key = sharegpt ? "value" : "content";
  size_t next_image = 0, markers = 0;
  for (size_t i = 0; i < turns.size(); ++i) {
    const json& t = turns[i];
    const std::string at = "turn " + std::to_string(i + 1);
    if (!t.is_object() || !t.contains(role_key) || !t[role_key].is_string() || !t.contains(text_key) ||
        !t[text_key].is_string())
      throw Error(where, at + ": expected {\"" + std::string(role_key) + "\": ..., \"" + text_key + "\": \"...\"}");
    const std::string raw_role = t[role_key].get<std::string>();
    const std::string role = role_of(raw_role);
    if (role.empty())
      throw Error(where, at + ": unknown role '" + raw_role + "' (human, gpt, system or user, assistant, system)");
    const std::string text = t[text_key].get<std::string>();
    if (role == "system") {
      if (i != 0) throw Error(where, at + ": a system turn must come first");
      if (count_markers(text)) throw Error(where, at + ": a system turn cannot hold an <image>");
      s.system_prompt = text;
      continue;
    }
    DataTurn dt{role, text, {}};
    const size_t n = count_markers(text);
    markers += n;
    for (size_t k = 0; k < n && next_image < images.size(); ++k)
      dt.images.push_back(io::resolve_data_path(images[next_image++], image_root, allow_absolute_paths, where,
                                                 "data.allow_absolute_paths: true"));
    s.turns.push_back(std::move(dt));
  }
  if (markers != images.size())
    throw Error(where, std::to_string(markers) + " <image> marker(s) but " + std::to_string(images.size()) + " image(s)");
  if (s.turns.empty()) throw Error(where, "no user or assistant turn");
  return s;
}

std::vector<DataSample> read_jsonl(const DataConfig& cfg, DataReport& report) {
  std::vector<DataSample> out;
  for (const auto& file : cfg.train_path) {
    std::error_code ec;
    if (!fs::is_regular_file(file, ec)) throw Error(file, "no such file (data.train_path)");
    std::ifstream in(file, std::ios::binary);
    if (!in) throw Error(file, "cannot read (data.train_path)");
    const std::string root = cfg.image_root.empty() ? fs::path(file).parent_path().string() : cfg.image_root;
    std::string line;
    int64_t lineno = 0;
    while (std::getline(in, line)) {
      ++lineno;
      if (!line.empty() && line.back() == '\r') line.pop_back();
      if (line.find_first_not_of(" \t") == std::string::npos) continue;
      ++report.lines;
      const std::string where = file + ":" + std::to_string(lineno);
      try {
        out.push_back(parse_sample(line, where, root, cfg.allow_absolute_paths));
      } catch (const Error& e) {
        if (!cfg.skip_bad_samples) throw;
        ++report.skipped;
        log_warn("skipping bad sample: ", e.what());
      }
    }
  }
  return out;
}

models::TrainExample to_example(const DataSample& s, const std::function<io::Image(const std::string&)>& read) {
  models::TrainExample ex;
  ex.system_prompt = s.system_prompt;
  ex.image_roles = s.image_roles;
  for (const auto& t : s.turns) {
    models::TrainTurn tt{t.role, generate::InterleavedInput::parse(t.text, t.images, kMarker)};
    try {
      tt.content.decode_images(read);
    } catch (const Error& e) {
      throw Error(s.where, e.what());
    }
    ex.turns.push_back(std::move(tt));
  }
  return ex;
}

}  // namespace omni::train
