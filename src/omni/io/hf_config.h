// Hugging Face config.json access with explicit defaults and errors that name the key and file.
//   auto cfg = HfConfig::from_file(dir + "/config.json");
//   int hidden = cfg.get<int>("hidden_size");              // required
//   double eps = cfg.get_or<double>("rms_norm_eps", 1e-6);  // default applied explicitly
//   HfConfig lm = cfg.sub("language_config");               // nested sub-config, path kept for errors
#pragma once
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "omni/core/error.h"

namespace omni::io {

class HfConfig {
 public:
  HfConfig() = default;
  HfConfig(nlohmann::json j, std::string source, std::string path = "")
      : j_(std::move(j)), source_(std::move(source)), path_(std::move(path)) {}

  static HfConfig from_file(const std::string& file);
  static HfConfig from_string(const std::string& text, const std::string& source);

  bool has(const std::string& key) const { return j_.is_object() && j_.contains(key) && !j_[key].is_null(); }
  HfConfig sub(const std::string& key) const;  // required nested object
  HfConfig sub_or_empty(const std::string& key) const;

  template <typename T>
  T get(const std::string& key) const {
    if (!has(key)) throw Error(where(key), "missing required key");
    return convert<T>(key);
  }
  template <typename T>
  T get_or(const std::string& key, const T& fallback) const {
    return has(key) ? convert<T>(key) : fallback;
  }

  const nlohmann::json& json() const { return j_; }
  const std::string& source() const { return source_; }
  std::string where(const std::string& key) const {
    return source_ + ": " + (path_.empty() ? key : path_ + "." + key);
  }

 private:
  template <typename T>
  T convert(const std::string& key) const {
    try {
      return j_.at(key).get<T>();
    } catch (const nlohmann::json::exception&) {
      throw Error(where(key), "has the wrong type (value " + j_.at(key).dump() + ")");
    }
  }
  nlohmann::json j_ = nlohmann::json::object();
  std::string source_;
  std::string path_;
};

}  // namespace omni::io
