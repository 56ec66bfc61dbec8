#include "fs/errno.h"

#include <cerrno>
#include <cstring>

namespace modelfs {

int ToErrno(const Status& s) {
  switch (s.code()) {
    case Code::kOk:
      return 0;
    case Code::kNotFound:
      return ENOENT;
    case Code::kPermissionDenied:
      return EACCES;
    case Code::kReadOnly:
      return EROFS;
    case Code::kInvalidArgument:
    case Code::kUnavailable:
    case Code::kIoError:
    case Code::kCorruption:
      return EIO;
  }
  return EIO;  // an out-of-range Code: never hand the kernel 0 for a failure
}

std::string ErrnoName(int err) {
  // glibc 2.32+ (Debian 12 has 2.36); a bounded set of names, so safe as a metric label.
  const char* name = strerrorname_np(err);
  if (name != nullptr) return name;
  // Appended, not "E" + to_string(): GCC 12 -O3 reports a false -Wrestrict on operator+.
  std::string unknown = "E";
  unknown += std::to_string(err);
  return unknown;
}

}  // namespace modelfs
