#include "common/file_util.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <fstream>
#include <sstream>

namespace modelfs {

Status MkdirP(const std::string& path, unsigned mode) {
  std::string cur;
  for (size_t i = 0; i <= path.size(); i++) {
    if (i == path.size() || path[i] == '/') {
      if (!cur.empty() && mkdir(cur.c_str(), static_cast<mode_t>(mode)) != 0 && errno != EEXIST) {
        return Status::IoError("cannot create " + cur + ": " + strerror(errno));
      }
    }
    if (i < path.size()) cur.push_back(path[i]);
  }
  return Status::Ok();
}

bool ReadFile(const std::string& path, std::string* out) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return false;
  std::ostringstream ss;
  ss << in.rdbuf();
  if (in.bad()) return false;
  *out = std::move(ss).str();
  return true;
}

Status WriteFileAtomic(const std::string& path, const std::string& data, Durability durability,
                       unsigned mode) {
  // pid + a per-process counter: two processes, or two threads of one, never share a temporary.
  static std::atomic<unsigned> counter{0};
  const std::string tmp = path + ".tmp." + std::to_string(getpid()) + "." + std::to_string(counter++);
  const int fd = open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, static_cast<mode_t>(mode));
  if (fd < 0) return Status::IoError("cannot write " + tmp + ": " + strerror(errno));
  auto fail = [&](const char* what) {
    const std::string e = strerror(errno);
    close(fd);
    unlink(tmp.c_str());
    return Status::IoError(std::string(what) + " " + tmp + ": " + e);
  };
  if (fchmod(fd, static_cast<mode_t>(mode)) != 0) return fail("cannot chmod");  // not the umask's say
  size_t done = 0;
  while (done < data.size()) {
    const ssize_t n = write(fd, data.data() + done, data.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return fail("cannot write");
    done += static_cast<size_t>(n);
  }
  if (durability == Durability::kPowerCut && fsync(fd) != 0) return fail("cannot fsync");
  close(fd);
  if (rename(tmp.c_str(), path.c_str()) != 0) {
    const std::string e = strerror(errno);
    unlink(tmp.c_str());
    return Status::IoError("cannot rename " + tmp + " to " + path + ": " + e);
  }
  if (durability == Durability::kPowerCut) {
    // The rename itself reaches the disk only with its directory.
    const size_t slash = path.rfind('/');
    const std::string dir = slash == std::string::npos ? "." : slash == 0 ? "/" : path.substr(0, slash);
    const int dfd = open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd < 0) return Status::IoError("cannot open " + dir + " to fsync it: " + strerror(errno));
    const bool synced = fsync(dfd) == 0;
    const std::string e = strerror(errno);
    close(dfd);
    if (!synced) return Status::IoError("cannot fsync " + dir + ": " + e);
  }
  return Status::Ok();
}

}  // namespace modelfs
