#include "common/file_util.h"

#include <errno.h>
#include <string.h>
#include <sys/stat.h>

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

}  // namespace modelfs
