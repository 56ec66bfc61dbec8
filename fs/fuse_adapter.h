// ServeFuse: mounts a ModelFs through the libfuse low-level API and serves it. This header,
// fs/fuse_adapter.cc (the requests) and fs/fuse_mount.cc (the session) are the only places that know
// about libfuse; the adapter converts requests to ModelFs calls and Status to errno (fs/errno.h),
// and nothing else.
#pragma once

#include <functional>
#include <memory>
#include <string>

#include "common/status.h"
#include "fs/model_fs.h"

namespace modelfs {

class MetricsRegistry;  // common/metrics.h

struct MountOptions {
  std::string mountpoint;
  bool foreground = false;   // false: daemonize once the mount is live
  bool debug = false;        // libfuse debug output (stderr)
  bool allow_other = false;  // let users other than the mounter see the mount
  // FUSE worker threads. Each blocks for the duration of one request, and a read of uncached bytes
  // can wait on the network for seconds, so a big pool keeps cached reads flowing meanwhile.
  unsigned max_threads = 64;
  // Kernel readahead per file, in bytes (conn->max_readahead and the mount's bdi read_ahead_kb).
  // A read of one tensor makes the kernel read up to two windows past it, so this is the bytes a
  // lazy loader wastes per tensor; sequential readers are prefetched by the cache, not by this.
  unsigned max_readahead = 8u << 20;
  // Reads copied through memory at once (part of --memory-budget: each holds a 1 MiB reply buffer,
  // and the cache may give it a 1 MiB block buffer): a read past them waits for a reply buffer to
  // come back before it starts. Replies spliced from the cache file give theirs back before the
  // reply. 0 = as many as there are threads.
  unsigned reply_buffers = 12;
  // systemd's $NOTIFY_SOCKET (read by tools/): once the mount is live and the filesystem ready,
  // "READY=1" and "MAINPID=<serving pid>" are sent there, for Type=notify units. "" = none.
  std::string notify_socket;
  // Where each request's latency goes (modelfs_fuse_request_duration_seconds, by op) and each
  // error reply is counted (modelfs_fuse_errors_total, by op and errno; fs/error_reporter.h);
  // null = neither (error replies are still logged). Not owned; must outlive ServeFuse.
  MetricsRegistry* metrics = nullptr;
  std::string fsname = "modelfs";
  std::string subtype = "modelfs";

  bool operator==(const MountOptions&) const = default;  // tools/ checks its defaults against these
};

// Mounts at opts.mountpoint (read-only), then, unless foreground, forks into a daemon. make_fs() is
// called in the process that will serve (after the fork: threads and network clients must be
// created after it) and the request loop runs until the mount is unmounted or SIGINT/SIGTERM/SIGHUP
// arrives, which unmounts cleanly.
//
// Exit codes: the invoking process returns 0 only once the mount is live and make_fs() succeeded in
// the daemon; if mounting fails, or make_fs() returns an error (printed to stderr), the mount is
// removed and 1 is returned (by the invoking process when daemonizing). The daemon returns 0 after
// a clean unmount. The return value is the process exit code; the caller should exit with it.
int ServeFuse(const MountOptions& opts,
              const std::function<Result<std::unique_ptr<ModelFs>>()>& make_fs);

}  // namespace modelfs
