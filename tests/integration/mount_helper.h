// MountedFs: runs the real `modelfs mount` binary against a fake hub for one test and unmounts on
// destruction. By default the daemon runs with -f as our child (so a test always knows its pid and
// can kill it); `daemon = true` exercises the real daemonizing path instead. RunMountHelper runs
// mount.modelfs as mount(8) does.
#pragma once

#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "tests/testing/temp_dir.h"

namespace modelfs::testing {

// True once `path` is a FUSE mount (its device differs from its parent's).
inline bool IsMountPoint(const std::string& path) {
  std::ifstream in("/proc/self/mounts");
  std::string line;
  while (std::getline(in, line)) {
    std::istringstream ss(line);
    std::string dev, mp, type;
    ss >> dev >> mp >> type;
    if (mp == path) return true;
  }
  return false;
}

// Runs a shell command line; returns its exit status and appends its stdout+stderr to *out.
inline int RunCmd(const std::string& cmd, std::string* out) {
  FILE* p = popen((cmd + " 2>&1").c_str(), "r");
  if (p == nullptr) return -1;
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, p)) > 0) out->append(buf, n);
  int st = pclose(p);
  return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

// What a run of mount.modelfs ended with: exit code and stdout+stderr.
struct HelperOutcome {
  int code = -1;
  std::string out;
};

// Runs mount.modelfs with `args` exactly as mount(8) runs an external helper: a minimal
// environment (PATH only; HOME is not needed with cache_dir=), output captured through a file in
// `work` (the helper's daemon keeps no descriptor of ours).
inline HelperOutcome RunMountHelper(const std::vector<std::string>& args, const std::string& work) {
  const std::string out = work + "/helper.out";
  std::vector<std::string> argv_s = {MODELFS_MOUNT_HELPER};
  argv_s.insert(argv_s.end(), args.begin(), args.end());
  pid_t pid = fork();
  if (pid == 0) {
    int fd = open(out.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    dup2(fd, 1);
    dup2(fd, 2);
    clearenv();
    setenv("PATH", "/usr/sbin:/usr/bin:/sbin:/bin", 1);
    std::vector<char*> argv;
    for (auto& a : argv_s) argv.push_back(const_cast<char*>(a.c_str()));
    argv.push_back(nullptr);
    execv(argv[0], argv.data());
    _exit(127);
  }
  int status = 0;
  waitpid(pid, &status, 0);
  HelperOutcome r;
  r.code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  std::ifstream in(out);
  std::ostringstream ss;
  ss << in.rdbuf();
  r.out = ss.str();
  return r;
}

struct MountSpec {
  std::string endpoint;
  std::string cache_dir;
  std::string repo;                   // "" = all repos
  std::vector<std::string> extra;     // more flags
  std::vector<std::string> env;       // "K=V" added to the environment
  bool daemon = false;
  // Mount here instead of a fresh directory of the test's own; the mount counts as up only once
  // the mount point answers statfs (a dead mount left there by a killed daemon is listed in
  // /proc/self/mounts too; stat of its root is answered from the kernel's cached attributes).
  std::string mountpoint;
};

class MountedFs {
 public:
  explicit MountedFs(const MountSpec& spec) : spec_(spec) {
    mountpoint_ = spec.mountpoint.empty() ? dir_.Sub("mnt") : spec.mountpoint;
    mkdir(mountpoint_.c_str(), 0755);
    log_ = dir_.Sub("modelfs.log");
    std::vector<std::string> args = {MODELFS_BINARY, "mount", "--endpoint", spec.endpoint,
                                     "--cache-dir", spec.cache_dir, "--log-level", "info",
                                     "--stall-timeout", "3", "--connect-timeout", "2", "--retries", "2"};
    if (spec.daemon) {
      args.insert(args.end(), {"--log-file", log_});
    } else {
      args.push_back("-f");
    }
    for (auto& e : spec.extra) args.push_back(e);
    if (!spec.repo.empty()) args.push_back(spec.repo);
    args.push_back(mountpoint_);
    pid_ = fork();
    if (pid_ == 0) {
      int fd = open(log_.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
      dup2(fd, 1);
      dup2(fd, 2);
      for (auto& e : spec.env) putenv(strdup(e.c_str()));
      std::vector<char*> argv;
      for (auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
      argv.push_back(nullptr);
      execv(argv[0], argv.data());
      _exit(127);
    }
    if (spec.daemon) {
      int status = 0;
      waitpid(pid_, &status, 0);
      exit_code_ = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
      pid_ = -1;
      mounted_ = exit_code_ == 0 && IsUp();
      return;
    }
    // Foreground: wait (bounded) for the mount to appear, or for the process to exit.
    for (int i = 0; i < 300; i++) {
      if (IsUp()) {
        mounted_ = true;
        return;
      }
      int status = 0;
      if (waitpid(pid_, &status, WNOHANG) == pid_) {
        exit_code_ = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
        pid_ = -1;
        return;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    ADD_FAILURE() << "mount did not appear within 6 s; log:\n" << Log();
  }

  ~MountedFs() { Unmount(); }

  void Unmount() {
    if (mounted_) {
      pid_t p = fork();
      if (p == 0) {
        execlp("fusermount3", "fusermount3", "-u", "-z", mountpoint_.c_str(), (char*)nullptr);
        _exit(127);
      }
      int st;
      waitpid(p, &st, 0);
      if (IsMountPoint(mountpoint_)) umount2(mountpoint_.c_str(), MNT_DETACH);
      mounted_ = false;
    }
    if (pid_ > 0) {
      int status = 0;
      for (int i = 0; i < 250 && waitpid(pid_, &status, WNOHANG) == 0; i++) {
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
      }
      if (kill(pid_, 0) == 0) {
        kill(pid_, SIGKILL);
        waitpid(pid_, &status, 0);
      }
      pid_ = -1;
    }
  }

  // kill -9 of the foreground daemon, reaped; the dead mount it leaves stays (no unmount on
  // destruction). Returns false if there was no daemon of ours to kill.
  bool Crash() {
    if (pid_ <= 0) return false;
    kill(pid_, SIGKILL);
    int status = 0;
    waitpid(pid_, &status, 0);
    pid_ = -1;
    mounted_ = false;
    return true;
  }

  bool mounted() const { return mounted_; }
  pid_t pid() const { return pid_; }
  int exit_code() const { return exit_code_; }
  const std::string& path() const { return mountpoint_; }
  std::string Path(const std::string& rel) const { return mountpoint_ + "/" + rel; }
  bool IsUp() const {
    if (!IsMountPoint(mountpoint_)) return false;
    struct statfs st;
    return spec_.mountpoint.empty() || statfs(mountpoint_.c_str(), &st) == 0;
  }
  std::string Log() const {
    std::ifstream in(log_);
    std::ostringstream ss;
    ss << in.rdbuf();
    return ss.str();
  }

 private:
  MountSpec spec_;
  TempDir dir_{"modelfs-mnt"};
  std::string mountpoint_;
  std::string log_;
  pid_t pid_ = -1;
  bool mounted_ = false;
  int exit_code_ = -1;
};

}  // namespace modelfs::testing
