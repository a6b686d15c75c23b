// Output files (generated images, traces, predictions) written so that a user's mistake cannot
// cost data: an output that names one of the run's inputs, or an existing file that is not a
// regular one (/dev/full, a FIFO), is refused before any work, and a write goes to a temporary
// file in the same folder that replaces the target only when complete. torch-free.
#pragma once
#include <cstddef>
#include <fstream>
#include <string>
#include <utility>
#include <vector>

namespace omni::io {

// Throws Error(flag + " " + path, why) unless `path` may be written: its folder exists, it is not
// a folder, not an existing non-regular file, and not the same file as any existing path in
// `inputs` (files, or folders whose files are all compared, e.g. the model directory).
void check_output_path(const std::string& flag, const std::string& path, const std::vector<std::string>& inputs);

// Writes `n` bytes to `path` through `path` + ".tmp" renamed into place; on any failure the
// temporary is removed, the target is left as it was, and Error(path, why) is thrown. An existing
// `path` that is not a regular file is refused.
void write_file_atomically(const std::string& path, const void* data, size_t n);

// Throws Error(path, why) when `path` exists and is not a regular file (a device, pipe or socket):
// what every writer here checks before it creates a temporary beside it.
void check_replaceable(const std::string& path);

// The temporary name write_file_atomically and the streamed writers use.
std::string temporary_path_for(const std::string& path);
// Moves a finished temporary over `path` (Error and the temporary removed on failure).
void commit_temporary(const std::string& tmp, const std::string& path);

// A text output written line by line as the work proceeds (eval's predictions), through a
// temporary: commit() moves it into place; destroyed uncommitted (an error midway) the temporary
// is removed and the target left as it was. An empty path writes nothing.
class LineOutput {
 public:
  explicit LineOutput(std::string path);
  ~LineOutput();
  LineOutput(const LineOutput&) = delete;
  LineOutput& operator=(const LineOutput&) = delete;
  explicit operator bool() const { return !path_.empty(); }
  void write_line(const std::string& line);  // Error(path, why) when the write fails
  void commit();

 private:
  std::string path_, tmp_;
  std::ofstream out_;
  bool committed_ = false;
};

}  // namespace omni::io
