// TempDir: a fresh directory under $TMPDIR (or /tmp), removed recursively when destroyed.
#pragma once

#include <string>

namespace modelfs::testing {

class TempDir {
 public:
  explicit TempDir(const std::string& prefix = "modelfs-test");
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::string& path() const { return path_; }
  std::string Sub(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

// Reads a whole file into a string; aborts the test (ADD_FAILURE) and returns "" if it cannot.
std::string ReadFileOrDie(const std::string& path);
// Writes (replaces) a file.
void WriteFileOrDie(const std::string& path, const std::string& data);

}  // namespace modelfs::testing
