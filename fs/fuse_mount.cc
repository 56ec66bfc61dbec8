// ServeFuse: the FUSE session's life. Mounts read-only with the options libfuse takes as
// strings, raises what the kernel allows for this mount (fs/kernel_knobs.h), daemonizes by hand so
// that the invoking process learns whether the filesystem came up, runs libfuse's worker loop
// over the callbacks of fs/fuse_adapter.cc, and unmounts on every exit path (Session).
#include "fs/fuse_adapter_internal.h"

#include "common/log.h"
#include "common/metrics.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <vector>

#include "fs/kernel_knobs.h"

namespace modelfs {

namespace {

using fuse_edge::kMaxIo;

// Idle workers kept alive between bursts, so a burst of reads does not pay thread creation each
// time.
constexpr unsigned kIdleThreads = 16;

// Escapes a value for a libfuse "-o a=b,c=d" list: ',' separates options and '\' escapes.
std::string EscapeOpt(const std::string& v) {
  std::string out;
  for (char c : v) {
    if (c == ',' || c == '\\') out.push_back('\\');
    out.push_back(c);
  }
  return out;
}

// RAII owner of a mounted session: unmounts and destroys on every exit path.
class Session {
 public:
  Session(fuse_session* se, bool mounted) : se_(se), mounted_(mounted) {}
  ~Session() {
    if (se_ == nullptr) return;
    if (handlers_) fuse_remove_signal_handlers(se_);
    if (mounted_) fuse_session_unmount(se_);
    fuse_session_destroy(se_);
  }
  Session(const Session&) = delete;
  Session& operator=(const Session&) = delete;
  fuse_session* get() const { return se_; }
  void set_mounted() { mounted_ = true; }
  void set_handlers() { handlers_ = true; }
  // The invoking process of a daemonizing mount: the daemon owns the mount now; just let go.
  void Abandon() { se_ = nullptr; }

 private:
  fuse_session* se_;
  bool mounted_;
  bool handlers_ = false;
};

// Redirects stdin/stdout (and stderr unless keep_stderr) to /dev/null, as a daemon should.
void DetachStdio(bool keep_stderr) {
  int fd = open("/dev/null", O_RDWR);
  if (fd < 0) return;
  dup2(fd, STDIN_FILENO);
  dup2(fd, STDOUT_FILENO);
  if (!keep_stderr) dup2(fd, STDERR_FILENO);
  if (fd > STDERR_FILENO) close(fd);
}

void WriteByte(int fd, char c) {
  while (write(fd, &c, 1) < 0 && errno == EINTR) {
  }
}

}  // namespace

int ServeFuse(const MountOptions& opts,
              const std::function<Result<std::unique_ptr<ModelFs>>()>& make_fs) {
  std::string mount_opts = "ro,default_permissions,fsname=" + EscapeOpt(opts.fsname) +
                           ",subtype=" + EscapeOpt(opts.subtype) +
                           ",max_read=" + std::to_string(kMaxIo);
  if (opts.allow_other) mount_opts += ",allow_other";
  std::vector<std::string> argv_s = {"modelfs", "-o", mount_opts};
  if (opts.debug) argv_s.push_back("-d");
  std::vector<char*> argv;
  for (std::string& s : argv_s) argv.push_back(s.data());
  fuse_args args = FUSE_ARGS_INIT(static_cast<int>(argv.size()), argv.data());

  fuse_edge::Server server(opts.metrics);
  server.max_readahead = opts.max_readahead;
  const unsigned replies = opts.reply_buffers ? opts.reply_buffers : std::max(1u, opts.max_threads);
  server.replies = std::make_unique<PageBufferPool>(kMaxIo, replies, replies);
  if (opts.metrics) {
    for (int op = 0; op < fuse_edge::kOpTimedCount; ++op)
      server.latency[op] = opts.metrics->Hist(Metric::kFuseRequestDuration, {fuse_edge::kOpNames[op]});
  }
  const fuse_lowlevel_ops ops = fuse_edge::MakeOps();
  Session session(fuse_session_new(&args, &ops, sizeof ops, &server), /*mounted=*/false);
  fuse_opt_free_args(&args);
  if (session.get() == nullptr) {
    std::fprintf(stderr, "modelfs: cannot create FUSE session\n");
    return 1;
  }
  if (fuse_set_signal_handlers(session.get()) != 0) {
    std::fprintf(stderr, "modelfs: cannot install signal handlers\n");
    return 1;
  }
  session.set_handlers();
  if (fuse_session_mount(session.get(), opts.mountpoint.c_str()) != 0) {
    std::fprintf(stderr, "modelfs: cannot mount at %s\n", opts.mountpoint.c_str());
    return 1;
  }
  session.set_mounted();
  RaiseBdiReadahead(opts.mountpoint, opts.max_readahead);
  server.splice = EnableSplicePipes(kMaxIo, &server.splice_note);

  // Daemonize by hand rather than with fuse_daemonize(): the invoking process must learn whether
  // make_fs() succeeded in the daemon (a mount of a bad repo should exit 1, not 0), so it waits on
  // a pipe for one status byte written after make_fs().
  int status_pipe[2] = {-1, -1};
  if (!opts.foreground) {
    if (pipe(status_pipe) != 0) {
      std::perror("modelfs: pipe");
      return 1;
    }
    std::fflush(nullptr);  // do not let both processes flush the same buffered output
    const pid_t pid = fork();
    if (pid < 0) {
      std::perror("modelfs: fork");
      return 1;
    }
    if (pid > 0) {
      close(status_pipe[1]);
      char code = 1;  // EOF without a byte: the daemon died before reporting
      while (read(status_pipe[0], &code, 1) < 0 && errno == EINTR) {
      }
      // On failure the daemon sends why after the byte (its stderr is already the log file):
      // say it on the user's terminal too.
      std::string why;
      char buf[512];
      for (ssize_t n; code != 0 && why.size() < 4096 && (n = read(status_pipe[0], buf, sizeof buf)) != 0;) {
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) break;
        why.append(buf, static_cast<size_t>(n));
      }
      if (!why.empty()) std::fprintf(stderr, "modelfs: %s\n", why.c_str());
      close(status_pipe[0]);
      close(fuse_session_fd(session.get()));
      session.Abandon();
      return code == 0 ? 0 : 1;
    }
    close(status_pipe[0]);
    setsid();
    if (chdir("/") != 0) {
      // Not fatal: only matters for keeping the old cwd's filesystem busy.
    }
  }

  Result<std::unique_ptr<ModelFs>> fs = make_fs();
  if (!fs.ok()) {
    const std::string why = fs.status().ToString();
    std::fprintf(stderr, "modelfs: %s\n", why.c_str());
    if (status_pipe[1] >= 0) {
      WriteByte(status_pipe[1], 1);
      for (size_t off = 0; off < why.size();) {
        ssize_t n = write(status_pipe[1], why.data() + off, why.size() - off);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) break;
        off += static_cast<size_t>(n);
      }
      close(status_pipe[1]);
    }
    return 1;  // ~Session unmounts
  }
  server.fs = std::move(fs).value();
  if (status_pipe[1] >= 0) {
    // A daemon must not hold the user's terminal; stderr that make_fs() already pointed at a log
    // file (not a terminal) stays, so the daemon's log keeps flowing there.
    DetachStdio(/*keep_stderr=*/opts.debug || !isatty(STDERR_FILENO));
    WriteByte(status_pipe[1], 0);
    close(status_pipe[1]);
  }
  NotifyReady(opts.notify_socket);  // the mount is live and the filesystem can answer
  // Content that failed its hash after being served: drop the kernel's cached pages of it.
  fuse_session* se = session.get();
  server.fs->SetContentInvalidator(
      [se](uint64_t ino) {
        int rc = fuse_lowlevel_notify_inval_inode(se, static_cast<fuse_ino_t>(ino), 0, 0);
        MODELFS_LOG(kDebug, "dropped the kernel's cached pages of inode %llu (%s)", (unsigned long long)ino,
                    rc == 0 ? "ok" : strerror(-rc));
      });

  fuse_loop_config* cfg = fuse_loop_cfg_create();
  fuse_loop_cfg_set_clone_fd(cfg, 0);
  fuse_loop_cfg_set_max_threads(cfg, std::max(1u, opts.max_threads));
  fuse_loop_cfg_set_idle_threads(cfg, std::min(kIdleThreads, std::max(1u, opts.max_threads)));
  const int rc = fuse_session_loop_mt(session.get(), cfg);
  fuse_loop_cfg_destroy(cfg);
  server.fs->SetContentInvalidator(nullptr);  // before the session goes away
  // ~Session (remove handlers, unmount, destroy) runs before `server` (declared earlier) is
  // destroyed, so no callback can reach a dead ModelFs.
  return rc < 0 ? 1 : 0;
}

}  // namespace modelfs
