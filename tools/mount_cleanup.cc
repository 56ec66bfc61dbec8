#include "tools/mount_cleanup.h"

#include <fcntl.h>
#include <sys/mount.h>
#include <sys/statfs.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace modelfs::cli {
namespace {

// Dead mounts stacked on one mount point that ClearDeadMount detaches at most: each failed
// restart that mounted on top of a dead mount adds one; more than a few means something else
// keeps mounting there.
constexpr int kMaxStackedDeadMounts = 8;

// statfs, not stat: the kernel answers stat of a FUSE mount's root from its cached attributes
// (a day, for modelfs) without asking the dead daemon, while statfs is always a request, which a
// dead connection fails with ENOTCONN at once.
bool IsDead(const std::string& mountpoint) {
  struct statfs st;
  return statfs(mountpoint.c_str(), &st) != 0 && errno == ENOTCONN;
}

}  // namespace

Status UnmountPath(const std::string& mountpoint, bool lazy) {
  const pid_t pid = fork();
  if (pid == 0) {
    execlp("fusermount3", "fusermount3", lazy ? "-uz" : "-u", mountpoint.c_str(), (char*)nullptr);
    _exit(127);
  }
  int status = 0;
  if (pid > 0 && waitpid(pid, &status, 0) == pid && WIFEXITED(status) && WEXITSTATUS(status) == 0) {
    return Status::Ok();
  }
  // No fusermount3 (or it failed): as root, unmount directly.
  if (umount2(mountpoint.c_str(), lazy ? MNT_DETACH : 0) == 0) return Status::Ok();
  return Status::IoError("cannot unmount " + mountpoint + ": " + strerror(errno));
}

Status ClearDeadMount(const std::string& mountpoint, int* cleared) {
  *cleared = 0;
  while (IsDead(mountpoint)) {
    if (*cleared == kMaxStackedDeadMounts) {
      return Status::IoError(mountpoint + " is still a dead mount after " + std::to_string(*cleared) +
                             " lazy unmounts");
    }
    Status s = UnmountPath(mountpoint, /*lazy=*/true);
    if (!s.ok()) {
      return Status::IoError(mountpoint + " is a dead mount (its daemon is gone: ENOTCONN) and could not be "
                             "detached: " + s.message());
    }
    ++*cleared;
  }
  return Status::Ok();
}

}  // namespace modelfs::cli
