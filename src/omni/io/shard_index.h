// Hugging Face shard index files (`model.safetensors.index.json`, `pytorch_model.bin.index.json`):
// {"metadata": {"total_size": N}, "weight_map": {"tensor.name": "shard-file-name"}}.
#pragma once
#include <map>
#include <string>
#include <vector>

#include "omni/core/strings.h"  // ends_with, for the files that name shards

namespace omni::io {

struct ShardIndex {
  std::string path;                               // the index file itself
  std::map<std::string, std::string> weight_map;  // tensor name -> shard path (resolved beside the index)
  std::vector<std::string> shards;                // distinct shard paths, sorted
};

// Parses and checks the index: valid JSON, a "weight_map" object of strings, every shard file
// present. Throws omni::Error naming the index (and the shard or tensor) otherwise.
ShardIndex read_shard_index(const std::string& path);

}  // namespace omni::io
