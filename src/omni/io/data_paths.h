// Where a data file's image paths point. Data files (training JSONL, eval sets) name images
// relative to a root folder; absolute paths and ".." components are refused unless the user
// allows them, so a downloaded data file cannot make omni read outside its folder.
#pragma once
#include <string>

namespace omni::io {

// `path` under `root` (an existing regular file). `where` prefixes errors ("file:line");
// `allow_setting` names the switch that allows absolute paths and "..", for the message.
std::string resolve_data_path(const std::string& path, const std::string& root, bool allow_absolute,
                              const std::string& where, const std::string& allow_setting);

}  // namespace omni::io
