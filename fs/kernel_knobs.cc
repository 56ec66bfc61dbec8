#include "fs/kernel_knobs.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstddef>
#include <cstdio>
#include <cstring>

namespace modelfs {
namespace {

// Mount-info paths escape space, tab, newline and backslash as \ooo.
std::string UnescapeMountinfo(const std::string& s) {
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '\\' && i + 3 < s.size()) {
      const std::string oct = s.substr(i + 1, 3);
      if (oct.size() == 3 && oct.find_first_not_of("01234567") == std::string::npos) {
        out.push_back(static_cast<char>(std::stoi(oct, nullptr, 8)));
        i += 3;
        continue;
      }
    }
    out.push_back(s[i]);
  }
  return out;
}

}  // namespace

// The kernel ignores a max_readahead above the mount's bdi read_ahead_kb (128 KiB by default),
// which caps kernel reads of a sequential reader at a few hundred KiB. Raising it is a per-mount
// sysfs knob that needs root, so this is best effort: find our mount's device in
// /proc/self/mountinfo (no FUSE request, so it cannot deadlock before the loop runs) and write the
// value; failures are ignored.
void RaiseBdiReadahead(const std::string& mountpoint, unsigned bytes) {
  char real[PATH_MAX];
  if (realpath(mountpoint.c_str(), real) == nullptr) return;
  FILE* f = std::fopen("/proc/self/mountinfo", "r");
  if (f == nullptr) return;
  char line[4096];
  std::string dev;
  while (std::fgets(line, sizeof line, f) != nullptr) {
    char majmin[64], mp[PATH_MAX];
    // Fields: mount id, parent id, major:minor, root, mount point, ...
    if (std::sscanf(line, "%*s %*s %63s %*s %4095s", majmin, mp) == 2 &&
        UnescapeMountinfo(mp) == real) {
      dev = majmin;  // the last match is the topmost mount: ours
    }
  }
  std::fclose(f);
  if (dev.empty()) return;
  FILE* ra = std::fopen(("/sys/class/bdi/" + dev + "/read_ahead_kb").c_str(), "w");
  if (ra == nullptr) return;
  std::fprintf(ra, "%u\n", bytes / 1024);
  std::fclose(ra);
}

// libfuse splices a reply only through a pipe that holds all of it: for a read of max_read it
// asks for max_read + 3 pages + the header, which the kernel rounds up to twice max_read. Above
// fs.pipe-max-size (1 MiB by default) only CAP_SYS_RESOURCE may size a pipe, so as root (with
// CAP_SYS_ADMIN) the limit is raised to that, never lowered. Without it libfuse would read the
// file into a buffer of its own for each reply, which costs more than our checked copy: then no
// spans are asked for. Returns whether replies can be spliced; *why says why not.
bool EnableSplicePipes(unsigned max_read, std::string* why) {
  const long need = 2L * max_read;
  long have = 0;
  if (FILE* f = std::fopen("/proc/sys/fs/pipe-max-size", "r")) {
    if (std::fscanf(f, "%ld", &have) != 1) have = 0;
    std::fclose(f);
  }
  if (have >= need) return true;
  if (FILE* f = std::fopen("/proc/sys/fs/pipe-max-size", "w")) {
    const bool ok = std::fprintf(f, "%ld\n", need) > 0;
    if (std::fclose(f) == 0 && ok) return true;
  }
  int p[2];
  if (pipe(p) == 0) {  // CAP_SYS_RESOURCE lets a pipe grow past the limit
    const bool ok = fcntl(p[0], F_SETPIPE_SZ, need) >= need;
    close(p[0]);
    close(p[1]);
    if (ok) return true;
  }
  *why = "fs.pipe-max-size is " + std::to_string(have) + " bytes; splicing a " +
         std::to_string(max_read) + "-byte reply needs " +
         std::to_string(need) + " (root can raise it)";
  return false;
}

// sd_notify(3) without libsystemd: one datagram to the unix socket systemd named ("@" = abstract
// namespace). Best effort: a unit that waits for it times out and says so; the mount still works.
void NotifyReady(const std::string& socket_path) {
  if (socket_path.empty()) return;
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (socket_path.size() >= sizeof(addr.sun_path)) return;
  memcpy(addr.sun_path, socket_path.data(), socket_path.size());
  if (addr.sun_path[0] == '@') addr.sun_path[0] = '\0';
  const int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return;
  const std::string msg = "READY=1\nMAINPID=" + std::to_string(getpid()) + "\n";
  const socklen_t len =
      static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + socket_path.size());
  if (sendto(fd, msg.data(), msg.size(), MSG_NOSIGNAL, reinterpret_cast<sockaddr*>(&addr), len) < 0) {
    std::fprintf(stderr, "modelfs: cannot notify systemd at %s: %s\n", socket_path.c_str(),
                 strerror(errno));
  }
  close(fd);
}

}  // namespace modelfs
