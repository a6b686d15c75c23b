#include "omni/io/hf_config.h"

#include <fstream>
#include <sstream>

namespace omni::io {

HfConfig HfConfig::from_file(const std::string& file) {
  std::ifstream in(file);
  if (!in) throw Error(file, "no such file");
  std::stringstream ss;
  ss << in.rdbuf();
  return from_string(ss.str(), file);
}

HfConfig HfConfig::from_string(const std::string& text, const std::string& source) {
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(text);
  } catch (const nlohmann::json::exception& e) {
    throw Error(source, std::string("invalid JSON: ") + e.what());
  }
  if (!j.is_object()) throw Error(source, "expected a JSON object");
  return HfConfig(std::move(j), source);
}

HfConfig HfConfig::sub(const std::string& key) const {
  if (!has(key)) throw Error(where(key), "missing required sub-config");
  if (!j_[key].is_object()) throw Error(where(key), "expected an object");
  return HfConfig(j_[key], source_, path_.empty() ? key : path_ + "." + key);
}

HfConfig HfConfig::sub_or_empty(const std::string& key) const {
  if (!has(key)) return HfConfig(nlohmann::json::object(), source_, path_.empty() ? key : path_ + "." + key);
  return sub(key);
}

}  // namespace omni::io
