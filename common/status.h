// Status and Result<T>: errors as values (leveldb style). Every layer returns these; exactly one
// function at the FUSE edge (fs/errno.cc: ToErrno) turns a Status into an errno.
#pragma once

#include <optional>
#include <string>
#include <utility>

namespace modelfs {

enum class Code {
  kOk = 0,
  kNotFound,          // repo, revision or file does not exist (ENOENT)
  kPermissionDenied,  // gated/private repo, token missing or lacking access (EACCES)
  kInvalidArgument,   // bad input from a caller or a malformed answer from a server (EINVAL/EIO)
  kCorruption,        // bytes failed their hash and no source served them intact (a small file after
                      // its refetches, a --verify-before-read fill that kept failing): EIO. A corrupt
                      // cached block alone is never this: it is a miss, refetched.
  kUnavailable,       // network, server 5xx, timeouts after retries (EIO)
  kIoError,           // local disk error
  kReadOnly,          // attempted write (EROFS)
};

// [[nodiscard]]: dropping a returned Status or Result is a compile warning (an error in development
// builds); a caller that really has nothing to do with a failure says why where it drops it.
class [[nodiscard]] Status {
 public:
  Status() = default;
  static Status Ok() { return Status(); }
  static Status NotFound(std::string m) { return Status(Code::kNotFound, std::move(m)); }
  static Status PermissionDenied(std::string m) { return Status(Code::kPermissionDenied, std::move(m)); }
  static Status InvalidArgument(std::string m) { return Status(Code::kInvalidArgument, std::move(m)); }
  static Status Corruption(std::string m) { return Status(Code::kCorruption, std::move(m)); }
  static Status Unavailable(std::string m) { return Status(Code::kUnavailable, std::move(m)); }
  static Status IoError(std::string m) { return Status(Code::kIoError, std::move(m)); }
  static Status ReadOnly(std::string m) { return Status(Code::kReadOnly, std::move(m)); }

  bool ok() const { return code_ == Code::kOk; }
  Code code() const { return code_; }
  const std::string& message() const { return msg_; }
  std::string ToString() const;

 private:
  Status(Code c, std::string m) : code_(c), msg_(std::move(m)) {}
  Code code_ = Code::kOk;
  std::string msg_;
};

// Result<T>: a value or a non-ok Status.
template <typename T>
class [[nodiscard]] Result {
 public:
  Result(T value) : value_(std::move(value)) {}          // NOLINT: implicit by design
  Result(Status status) : status_(std::move(status)) {}  // NOLINT: implicit by design
  bool ok() const { return status_.ok(); }
  const Status& status() const { return status_; }
  T& value() & { return *value_; }
  const T& value() const& { return *value_; }
  T&& value() && { return std::move(*value_); }
  T* operator->() { return &*value_; }
  const T* operator->() const { return &*value_; }
  T& operator*() { return *value_; }
  const T& operator*() const { return *value_; }

 private:
  Status status_;
  std::optional<T> value_;
};

}  // namespace modelfs
