// Internals of the libfuse edge shared by its two files:
//   fuse_adapter.cc  the requests: each low-level callback, and the table of them (MakeOps)
//   fuse_mount.cc    the session: mount, daemonize, the worker loop, unmount (ServeFuse)
// Not part of the fs interface: include it (first: it sets the libfuse API version) from those
// files only.
//
// API version: 3.12, not 3.4. Under FUSE_USE_VERSION < 312 the headers map fuse_session_loop_mt to
// the 3.2 ABI, whose config struct has no max_threads (libfuse then caps the pool at 10 workers,
// too few when slow network reads occupy workers). 312 gives fuse_loop_cfg_set_max_threads. Nothing
// else we use differs between the two versions (only ioctl's signature, which we do not implement).
#pragma once
#define FUSE_USE_VERSION 312

#include <fuse3/fuse_lowlevel.h>

#include <array>
#include <memory>
#include <string>

#include "common/metrics.h"
#include "common/page_buffer.h"
#include "fs/error_reporter.h"
#include "fs/fuse_adapter.h"
#include "fs/model_fs.h"

namespace modelfs::fuse_edge {

// Largest FUSE read/write request in bytes. The kernel splits reads at max_pages * page size;
// libfuse derives max_pages from max_write, and its receive buffer holds 256 pages + header, so 1
// MiB is the most libfuse 3.14 can take. The `max_read` mount option must equal conn->max_read
// (libfuse checks).
constexpr unsigned kMaxIo = 1u << 20;

// The op label of modelfs_fuse_request_duration_seconds (the ops before kOpTimedCount) and of
// modelfs_fuse_errors_total (all of them). Write-type requests and getxattr are answered at once
// and forget has no reply, so they are not timed; they can still answer with an error.
enum FuseOp { kOpLookup, kOpGetattr, kOpOpendir, kOpReaddir, kOpReaddirplus, kOpReleasedir, kOpOpen,
              kOpRead, kOpRelease, kOpStatfs, kOpTimedCount,
              kOpGetxattr = kOpTimedCount, kOpSetattr, kOpMknod, kOpMkdir, kOpUnlink, kOpRmdir,
              kOpSymlink, kOpRename, kOpLink, kOpCreate, kOpWrite, kOpSetxattr, kOpRemovexattr,
              kOpFallocate, kOpCount };
inline constexpr const char* kOpNames[kOpCount] = {
    "lookup", "getattr",  "opendir", "readdir", "readdirplus", "releasedir", "open",   "read",
    "release", "statfs",  "getxattr", "setattr", "mknod",      "mkdir",      "unlink", "rmdir",
    "symlink", "rename",  "link",     "create",  "write",      "setxattr",   "removexattr",
    "fallocate"};

// What the session's userdata points to. `fs` is set after the fork, before the loop starts, and
// stays until the session is destroyed. `latency` is filled before the session exists (all null
// without a metrics registry) and read-only afterwards; `errors` lives as long as the Server.
struct Server {
  explicit Server(MetricsRegistry* metrics) : errors(metrics) {}
  std::unique_ptr<ModelFs> fs;
  unsigned max_readahead = 0;  // bytes, from MountOptions
  std::unique_ptr<PageBufferPool> replies;  // read reply buffers (MountOptions::reply_buffers)
  // Whether read replies of checked cache blocks are spliced (EnableSplicePipes), and why if not.
  bool splice = false;
  std::string splice_note;
  std::array<Histogram*, kOpTimedCount> latency{};
  ErrorReporter errors;
};

// The low-level operations: every callback of fs/fuse_adapter.cc (write-type ones refuse).
fuse_lowlevel_ops MakeOps();

}  // namespace modelfs::fuse_edge
