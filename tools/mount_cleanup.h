// Unmounting, and clearing the dead mount a killed daemon leaves behind.
//
// When a FUSE daemon dies without unmounting (kill -9, the OOM killer, a crash), the kernel aborts
// the connection: requests waiting for an answer fail (ECONNABORTED), and every later access to
// the mount point fails with ENOTCONN ("Transport endpoint is not connected") until someone
// unmounts it. A new mount on top would work but hide nothing useful and leave the dead one
// stacked underneath; worse, `modelfs mount` could not even check the mount point. So before
// mounting, `modelfs mount` (and through it mount.modelfs and the systemd units) detaches a dead
// mount it finds there: lazily (MNT_DETACH / fusermount3 -z), so a process still holding a file
// or its working directory in the dead mount cannot make the restart fail.
#pragma once

#include <string>

#include "common/status.h"

namespace modelfs::cli {

// Unmounts `mountpoint` with `fusermount3 -u` (plus -z when lazy), or umount2(2) (MNT_DETACH when
// lazy) when fusermount3 is missing or fails (as root). IoError naming the reason on failure.
Status UnmountPath(const std::string& mountpoint, bool lazy);

// If `mountpoint` is a dead mount (statfs fails with ENOTCONN), detaches it lazily, repeating for
// dead mounts stacked under it, and sets *cleared to how many it detached (0: nothing was dead:
// a plain directory, a live mount, a path that does not exist). An error if one could not be
// detached (not root and no fusermount3, or not ours to unmount).
Status ClearDeadMount(const std::string& mountpoint, int* cleared);

}  // namespace modelfs::cli
