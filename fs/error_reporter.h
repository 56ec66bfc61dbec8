// ErrorReporter: what the FUSE edge does with every error reply besides sending it. Each one is
// counted in modelfs_fuse_errors_total{op,errno} and, unless it is a normal answer, logged with
// the path it concerned and the Status that caused it, at most kLinesPerSecond lines a second
// (the next line written says how many were left out). No libfuse types: fs/fuse_adapter.cc calls
// Report just before fuse_reply_err, and a unit test calls it directly.
//
// Normal answers are counted but logged only at debug level: a lookup of a name that does not
// exist (ENOENT; loaders probe for optional files all the time) and getxattr on a file without
// that attribute (ENODATA; `ls -l` and cp ask for security labels and ACLs on every file).
//
// Thread-safe: called from every FUSE worker. Counting resolves the series through the registry
// (its mutex, once per error reply; errors are not the hot path); the limiter has its own leaf lock.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <string>

#include "common/rate_limiter.h"

namespace modelfs {

class MetricsRegistry;  // common/metrics.h

class ErrorReporter {
 public:
  // Error lines per second: enough to see which files fail and why during an outage, few enough
  // that a loader retrying thousands of reads of a dead mirror cannot flood the log (or the disk
  // under it).
  static constexpr uint32_t kLinesPerSecond = 10;

  // `metrics` may be null (nothing counted); not owned, must outlive this.
  explicit ErrorReporter(MetricsRegistry* metrics, uint32_t lines_per_second = kLinesPerSecond);
  ErrorReporter(const ErrorReporter&) = delete;
  ErrorReporter& operator=(const ErrorReporter&) = delete;

  // One error reply: `op` is the FUSE operation ("read", "lookup", ...; the op label), `err` a
  // positive errno, `cause` why (a Status's ToString(), or a fixed reason). `path` is called only
  // when a line is written (it takes the inode table's lock).
  void Report(const char* op, int err, const std::function<std::string()>& path, const std::string& cause);

  // True for the replies that are ordinary traffic, not failures (see the top of this file).
  static bool IsNormalAnswer(const std::string& op, int err);
  // Warning lines written and left out so far (tests).
  uint64_t lines_written() const { return lines_written_.load(std::memory_order_relaxed); }
  uint64_t lines_suppressed() const { return limiter_.total_suppressed(); }

 private:
  MetricsRegistry* const metrics_;
  LineRateLimiter limiter_;
  std::atomic<uint64_t> lines_written_{0};
};

}  // namespace modelfs
