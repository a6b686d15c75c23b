#include "omni/io/shard_index.h"

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <set>

#include "omni/core/error.h"

namespace omni::io {

ShardIndex read_shard_index(const std::string& path) {
  std::ifstream in(path);
  if (!in) throw Error(path, "no such file");
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(in);
  } catch (const nlohmann::json::exception& e) {
    throw Error(path, std::string("invalid JSON: ") + e.what());
  }
  if (!j.is_object() || !j.contains("weight_map") || !j["weight_map"].is_object())
    throw Error(path, "expected a shard index with a \"weight_map\" object");
  ShardIndex idx;
  idx.path = path;
  const auto dir = std::filesystem::path(path).parent_path();
  std::set<std::string> shards;
  for (auto it = j["weight_map"].begin(); it != j["weight_map"].end(); ++it) {
    if (!it.value().is_string())
      throw Error(path, "weight_map entry '" + it.key() + "' is not a file name");
    std::string file = it.value().get<std::string>();
    if (file.empty() || file.find('/') != std::string::npos || file == "..")
      throw Error(path, "weight_map entry '" + it.key() + "' names '" + file +
                            "', expected a file name beside the index");
    std::string shard = (dir / file).string();
    idx.weight_map[it.key()] = shard;
    shards.insert(shard);
  }
  if (idx.weight_map.empty()) throw Error(path, "weight_map is empty");
  for (const auto& s : shards) {
    if (!std::filesystem::is_regular_file(s))
      throw Error(path, "shard '" + std::filesystem::path(s).filename().string() + "' is missing");
  }
  idx.shards.assign(shards.begin(), shards.end());
  return idx;
}

}  // namespace omni::io
