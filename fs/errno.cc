#include "fs/errno.h"

#include <cerrno>

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

}  // namespace modelfs
