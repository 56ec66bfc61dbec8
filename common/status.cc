#include "common/status.h"

namespace modelfs {

std::string Status::ToString() const {
  const char* name = "OK";
  switch (code_) {
    case Code::kOk: return "OK";
    case Code::kNotFound: name = "NotFound"; break;
    case Code::kPermissionDenied: name = "PermissionDenied"; break;
    case Code::kInvalidArgument: name = "InvalidArgument"; break;
    case Code::kCorruption: name = "Corruption"; break;
    case Code::kUnavailable: name = "Unavailable"; break;
    case Code::kIoError: name = "IoError"; break;
    case Code::kReadOnly: name = "ReadOnly"; break;
  }
  return std::string(name) + ": " + msg_;
}

}  // namespace modelfs
