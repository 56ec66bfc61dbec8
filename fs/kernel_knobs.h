// What a mount asks of the kernel and of systemd besides the FUSE session itself, all best
// effort: a knob that cannot be turned leaves the mount working, only slower (or unannounced).
#pragma once

#include <string>

namespace modelfs {

// Raises the mount's bdi read_ahead_kb to `bytes` (root only; failures are ignored).
void RaiseBdiReadahead(const std::string& mountpoint, unsigned bytes);

// Makes room for libfuse to splice replies of up to `max_read` bytes (fs.pipe-max-size, raised
// when root may). Returns whether it can; *why says why not.
bool EnableSplicePipes(unsigned max_read, std::string* why);

// sd_notify(3) "READY=1" and our pid to $NOTIFY_SOCKET's path ("" = nothing to do).
void NotifyReady(const std::string& socket_path);

}  // namespace modelfs
