// mount.modelfs: the mount(8) helper, so that `mount -t modelfs SRC DIR -o OPTS`, /etc/fstab lines
// and systemd .mount units work.
//
// mount(8) runs `/sbin/mount.modelfs SRC DIR [-sfnv] [-o OPTS]` (mount(8), "EXTERNAL HELPERS").
// This helper turns that into `modelfs mount [FLAGS] [SRC] DIR` and execs it; `modelfs mount`
// daemonizes and exits 0 only once the mount is live, which is what mount(8) and systemd wait for.
//
//   SRC    ORG/NAME[@REV] or datasets/ORG/NAME[@REV] (the mount root is that repo), or "modelfs"
//          / "none" / "hf" (every repo on first lookup).
//   OPTS   comma-separated, "\," escapes a comma. Each key=value becomes --key value and each bare
//          key --key, with "_" and "-" treated alike, for every flag of `modelfs mount` (the one
//          option table, tools/mount_option_table.cc): cache_dir=, cache_size=, endpoint=,
//          token_file=, log_level=, threads=, allow_other, hf_cache, ... Options that belong to mount(8),
//          systemd or the kernel's generic flags are dropped: ro (modelfs is always read-only),
//          rw, defaults, auto, noauto, user, users, nouser, _netdev, nofail, x-*, comment=,
//          dev/nodev, suid/nosuid, exec/noexec, atime/noatime/relatime (FUSE mounts are nodev and
//          nosuid already). Anything else is an error (exit 1), unless -s (sloppy) is given.
//   -f     fake: print the command instead of running it.  -v: print it, then run it.
//   -n     ignored (no /etc/mtab to write).
//
// A dead mount at DIR (its daemon was killed) is detached by `modelfs mount` itself before it
// mounts (tools/mount_cleanup.h), so `mount DIR` after a crash needs no manual step here either.
//
// Exit codes follow mount(8): 0 mounted, 1 incorrect invocation or options, 32 mount failure.
// The modelfs binary is found next to this helper, then in ../bin (sbin and bin of one prefix),
// then on PATH.
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <string>
#include <vector>

#include "tools/options.h"

namespace {

// mount(8)'s exit codes (mount(8), "RETURN CODES").
constexpr int kExitUsage = 1;
constexpr int kExitMountFailure = 32;

// Splits OPTS on unescaped commas; "\," is a literal comma.
std::vector<std::string> SplitOptions(const std::string& opts) {
  std::vector<std::string> out;
  std::string cur;
  for (size_t i = 0; i < opts.size(); i++) {
    if (opts[i] == '\\' && i + 1 < opts.size() && opts[i + 1] == ',') {
      cur.push_back(',');
      i++;
    } else if (opts[i] == ',') {
      if (!cur.empty()) out.push_back(cur);
      cur.clear();
    } else {
      cur.push_back(opts[i]);
    }
  }
  if (!cur.empty()) out.push_back(cur);
  return out;
}

bool Dropped(const std::string& key) {
  static const char* const kDrop[] = {
      "ro",     "rw",      "defaults", "auto",  "noauto", "user",   "users",    "nouser",
      "_netdev", "nofail", "comment",  "dev",   "nodev",  "suid",   "nosuid",   "exec",
      "noexec", "atime",   "noatime",  "relatime", "strictatime", "nodiratime", "loop"};
  for (const char* d : kDrop) {
    if (key == d) return true;
  }
  return key.rfind("x-", 0) == 0;
}

// Maps one option to modelfs mount flags. False if it is not a modelfs option.
bool MapOption(const std::string& item, std::vector<std::string>* flags) {
  const size_t eq = item.find('=');
  std::string key = item.substr(0, eq);
  if (Dropped(key)) return true;
  for (char& c : key) {
    if (c == '_') c = '-';
  }
  const std::string flag = "--" + key;
  for (const auto& o : modelfs::cli::MountOptionTable()) {
    if (flag != o.flag || flag == "--help" || flag == "--foreground" || flag == "--debug") continue;
    if ((o.value_name != nullptr) != (eq != std::string::npos)) return false;
    flags->push_back(flag);
    if (o.value_name) flags->push_back(item.substr(eq + 1));
    return true;
  }
  return false;
}

std::string Dirname(const std::string& p) {
  const size_t s = p.rfind('/');
  return s == std::string::npos ? "." : p.substr(0, s);
}

std::string FindModelfs() {
  char self[PATH_MAX];
  const ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
  if (n > 0) {
    self[n] = '\0';
    const std::string dir = Dirname(self);
    for (const std::string& c : {dir + "/modelfs", dir + "/../bin/modelfs"}) {
      if (access(c.c_str(), X_OK) == 0) return c;
    }
  }
  return "modelfs";  // execvp searches PATH
}

int Usage(const char* msg, FILE* to = stderr) {
  fprintf(to,
          "mount.modelfs: %s\n"
          "Usage: mount.modelfs SOURCE DIR [-sfnv] [-o OPTIONS]\n"
          "  SOURCE  ORG/NAME[@REV], datasets/ORG/NAME[@REV], or none (every repo)\n"
          "  OPTIONS e.g. ro,allow_other,cache_dir=/var/cache/modelfs,cache_size=100GiB,"
          "endpoint=https://huggingface.co,hf_cache\n"
          "Exit codes (mount(8)'s): 0 mounted; 1 incorrect invocation or options; 32 mount failure.\n",
          msg);
  return kExitUsage;
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<std::string> positional;
  std::string opts;
  bool sloppy = false, fake = false, verbose = false;
  auto add_opts = [&opts](const std::string& more) {
    if (!opts.empty()) opts += ',';
    opts += more;
  };
  for (int i = 1; i < argc; i++) {
    const std::string a = argv[i];
    if (a == "-h" || a == "--help") {
      Usage("mounts modelfs for mount(8), /etc/fstab and systemd", stdout);
      return 0;
    }
    if (a == "-o") {
      if (i + 1 >= argc) return Usage("-o needs options");
      add_opts(argv[++i]);
    } else if (a.rfind("-o", 0) == 0 && a.size() > 2) {
      add_opts(a.substr(2));
    } else if (a.size() > 1 && a[0] == '-') {
      for (char c : a.substr(1)) {
        if (c == 's') sloppy = true;
        else if (c == 'f') fake = true;
        else if (c == 'v') verbose = true;
        else if (c != 'n') return Usage(("unknown flag -" + std::string(1, c)).c_str());
      }
    } else {
      positional.push_back(a);
    }
  }
  if (positional.size() != 2) return Usage("expected SOURCE and DIR");
  const std::string& source = positional[0];
  std::vector<std::string> cmd = {FindModelfs(), "mount"};
  for (const std::string& item : SplitOptions(opts)) {
    if (!MapOption(item, &cmd)) {
      if (sloppy) continue;
      return Usage(("unknown option '" + item + "'").c_str());
    }
  }
  if (source != "none" && source != "modelfs" && source != "hf") cmd.push_back(source);
  cmd.push_back(positional[1]);

  if (fake || verbose) {
    std::string line;
    for (const auto& c : cmd) {
      if (!line.empty()) line += ' ';
      line += c;
    }
    printf("%s\n", line.c_str());
    fflush(stdout);
    if (fake) return 0;
  }
  std::vector<char*> args;
  for (auto& c : cmd) args.push_back(const_cast<char*>(c.c_str()));
  args.push_back(nullptr);
  const pid_t pid = fork();
  if (pid == 0) {
    execvp(args[0], args.data());
    fprintf(stderr, "mount.modelfs: cannot run %s: %s\n", args[0], strerror(errno));
    _exit(127);
  }
  int status = 0;
  if (pid < 0 || waitpid(pid, &status, 0) != pid) return kExitMountFailure;
  if (!WIFEXITED(status)) return kExitMountFailure;
  const int code = WEXITSTATUS(status);
  // modelfs mount: 0 live, 2 usage error, anything else a failure to mount.
  return code == 0 ? 0 : code == 2 ? kExitUsage : kExitMountFailure;
}
