#include "omni/io/output_file.h"

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <system_error>

#include "omni/core/error.h"

namespace omni::io {
namespace fs = std::filesystem;

namespace {

bool same_file(const fs::path& a, const fs::path& b) {
  std::error_code ec;
  const bool same = fs::equivalent(a, b, ec);
  return !ec && same;
}

// A model directory holds a few dozen files; a folder with more is compared up to this many.
constexpr int kMaxFilesCompared = 10000;

bool names_an_input(const fs::path& out, const std::string& input) {
  std::error_code ec;
  if (input.empty() || !fs::exists(input, ec)) return false;
  if (!fs::is_directory(input, ec)) return same_file(out, input);
  int seen = 0;
  for (fs::recursive_directory_iterator it(input, fs::directory_options::skip_permission_denied, ec), end;
       !ec && it != end && seen < kMaxFilesCompared; it.increment(ec), ++seen)
    if (it->is_regular_file(ec) && same_file(out, it->path())) return true;
  return false;
}

constexpr const char* kNotRegular =
    "exists and is not a regular file (a device, pipe or socket); refusing to replace it";
bool exists_and_not_regular(const fs::path& p) {
  std::error_code ec;
  const auto st = fs::status(p, ec);
  return !ec && fs::exists(st) && !fs::is_regular_file(st);
}

}  // namespace

void check_output_path(const std::string& flag, const std::string& path, const std::vector<std::string>& inputs) {
  const std::string what = flag + " " + path;
  if (path.empty()) throw Error(flag, "empty path");
  std::error_code ec;
  const fs::path p(path);
  if (path.back() == '/' || fs::is_directory(p, ec)) throw Error(what, "is a directory; name the file to write");
  const auto parent = p.parent_path();
  if (!parent.empty() && !fs::is_directory(parent, ec)) throw Error(what, "the output directory does not exist");
  if (exists_and_not_regular(p)) throw Error(what, kNotRegular);
  if (!fs::exists(p, ec)) return;
  for (const auto& in : inputs)
    if (names_an_input(p, in)) throw Error(what, "is one of this run's inputs (" + in + "); refusing to overwrite it");
}

std::string temporary_path_for(const std::string& path) { return path + ".tmp"; }

void check_replaceable(const std::string& path) {
  if (exists_and_not_regular(path)) throw Error(path, kNotRegular);
}

void commit_temporary(const std::string& tmp, const std::string& path) {
  if (exists_and_not_regular(path)) {
    std::remove(tmp.c_str());
    throw Error(path, kNotRegular);
  }
  std::error_code ec;
  fs::rename(tmp, path, ec);
  if (ec) {
    std::remove(tmp.c_str());
    throw Error(path, "cannot move the finished file into place: " + ec.message());
  }
}

LineOutput::LineOutput(std::string path) : path_(std::move(path)) {
  if (path_.empty()) return;
  check_replaceable(path_);
  tmp_ = temporary_path_for(path_);
  out_.open(tmp_);
  if (!out_) throw Error(path_, std::string("cannot create file: ") + std::strerror(errno));
}

LineOutput::~LineOutput() {
  if (!path_.empty() && !committed_) {
    out_.close();
    std::remove(tmp_.c_str());
  }
}

void LineOutput::write_line(const std::string& line) {
  if (path_.empty()) return;
  out_ << line << '\n' << std::flush;
  if (!out_) throw Error(path_, "write failed (disk full?)");
}

void LineOutput::commit() {
  if (path_.empty() || committed_) return;
  out_.close();
  committed_ = true;
  if (!out_) {
    std::remove(tmp_.c_str());
    throw Error(path_, "write failed (disk full?)");
  }
  commit_temporary(tmp_, path_);
}

void write_file_atomically(const std::string& path, const void* data, size_t n) {
  check_replaceable(path);  // before a temporary appears beside it (/dev/null.tmp)
  const std::string tmp = temporary_path_for(path);
  FILE* f = std::fopen(tmp.c_str(), "wb");
  if (!f) throw Error(path, std::string("cannot create file: ") + std::strerror(errno));
  bool ok = n == 0 || std::fwrite(data, 1, n, f) == n;
  int err = ok ? 0 : errno;
  if (std::fclose(f) != 0 && ok) {
    ok = false;
    err = errno;
  }
  if (!ok) {
    std::remove(tmp.c_str());
    throw Error(path, std::string("cannot write file: ") + (err ? std::strerror(err) : "write failed (disk full?)"));
  }
  commit_temporary(tmp, path);
}

}  // namespace omni::io
