// ToErrno: the one place a Status becomes an errno. Only the FUSE edge (fs/fuse_adapter.cc) calls
// it; every other layer passes Status values around.
#pragma once

#include <string>

#include "common/status.h"

namespace modelfs {

// Maps a non-ok Status to a positive errno value for a FUSE reply; returns 0 for OK.
//   NotFound -> ENOENT, PermissionDenied -> EACCES, ReadOnly -> EROFS,
//   InvalidArgument / Unavailable / IoError / Corruption -> EIO.
// InvalidArgument is EIO, not EINVAL: by the time it reaches the kernel it means a malformed answer
// from the hub (or a tree we could not build), which the application could not have avoided.
int ToErrno(const Status& s);

// The symbolic name of an errno value ("ENOENT", "EIO", ...) for metric labels and log lines;
// "E<number>" for a value the C library has no name for. Never null.
std::string ErrnoName(int err);

}  // namespace modelfs
