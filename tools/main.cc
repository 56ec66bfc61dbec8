// modelfs: the command-line entry point. Parses options (tools/options.h), wires the layers
// together (fetch -> cache -> fs) and hands the filesystem to the FUSE adapter.
#include <fcntl.h>
#include <malloc.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <climits>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>
#include <vector>

#include "common/log.h"
#include "common/file_util.h"
#include "common/metrics.h"
#include "fs/fuse_adapter.h"
#include "fs/model_fs.h"
#include "tools/cmd_cache.h"
#include "tools/cmd_config.h"
#include "tools/cmd_download.h"
#include "tools/engine.h"
#include "tools/monitor.h"
#include "tools/mount_cleanup.h"
#include "tools/options.h"

namespace modelfs {
namespace {

constexpr const char* kVersion = "0.1.0";

// The daemon's heap, set before any thread exists. Its big buffers come from pools inside the
// memory budget (common/page_buffer.h); what glibc would add on top is kept small:
//  - a fixed mmap threshold: an allocation of 1 MiB or more (libfuse's request buffer per worker, a
//    block read for a verification) is its own mapping, given back to the kernel when freed. The
//    default threshold rises to the largest size freed so far, after which such buffers stay in
//    the arenas for good. Below it (curl's 512 KiB receive buffer, allocated per transfer), the
//    arenas recycle them: at 128 KiB each would be a fresh mapping and 129 page faults, which cost
//    a third more daemon CPU on a cold read.
//  - a trim threshold of 2 MiB (twice the mmap threshold, as glibc's own adjustment would set it):
//    fixing the mmap threshold also fixes this one at its 128 KiB default, and the arenas then gave
//    their top back and faulted it in again every few transfers (10-15% more daemon CPU on a cold
//    read, bench/ab_cold.sh). At 8 MiB the arenas kept 10-20 MiB more.
//  - 4 arenas instead of 8 per core: with 64 FUSE workers and 16 fetch threads, each arena kept
//    its own high-water mark of freed blocks. Measured with bench/memory.sh (64 random readers,
//    --memory-budget 64MiB): peak RSS 161 MiB without these two, 116 with them (before block
//    buffers were pooled).
// A user who sets GLIBC_TUNABLES tunes malloc themselves: left alone then.
void TuneHeapForTheDaemon() {
  if (getenv("GLIBC_TUNABLES") != nullptr) return;
  mallopt(M_MMAP_THRESHOLD, 1 << 20);
  mallopt(M_TRIM_THRESHOLD, 2 << 20);
  mallopt(M_ARENA_MAX, 4);
}

int Mount(const std::vector<std::string>& args) {
  TuneHeapForTheDaemon();
  cli::MountConfig cfg;
  bool help = false;
  Status s = cli::ParseMount(args, cli::Environment::Process(), &cfg, &help);
  if (help) {
    fputs(cli::MountHelp().c_str(), stdout);
    return 0;
  }
  if (!s.ok()) {
    fprintf(stderr, "modelfs mount: %s\n", s.message().c_str());
    return 2;
  }
  LogLevel level = LogLevel::kInfo;
  ParseLogLevel(cfg.log_level, &level);  // validated by ParseMount
  SetLogLevel(level);
  LogFormat format = LogFormat::kText;
  ParseLogFormat(cfg.log_format, &format);  // validated by ParseMount
  SetLogFormat(format);
  RegisterLogSecret(cfg.fetch.token);  // belt and braces: fetch/ never logs it anyway
  // A dead mount left by a daemon that died (kill -9, OOM) answers every access with ENOTCONN:
  // detach it first, so a restart (systemd's Restart=, mount.modelfs, by hand) just works. Said
  // in the daemon's log once it is open (make_fs below).
  int dead_mounts = 0;
  if (Status c = cli::ClearDeadMount(cfg.mount.mountpoint, &dead_mounts); !c.ok()) {
    fprintf(stderr, "modelfs mount: %s\n", c.message().c_str());
    return 1;
  }
  // Check what can be checked before mounting, so errors reach the user's terminal.
  struct stat st;
  if (stat(cfg.mount.mountpoint.c_str(), &st) != 0 || !S_ISDIR(st.st_mode)) {
    fprintf(stderr, "modelfs mount: mount point %s is not a directory\n", cfg.mount.mountpoint.c_str());
    return 1;
  }
  s = MkdirP(cfg.cache.dir);
  if (s.ok() && access(cfg.cache.dir.c_str(), W_OK) != 0) {
    // A read-only cache (a read-only image, a full or failing disk remounted ro) still serves
    // what it holds; everything else is read uncached.
    fprintf(stderr, "modelfs mount: warning: cache directory %s is not writable (%s); serving "
            "what it holds and reading the rest uncached\n", cfg.cache.dir.c_str(), strerror(errno));
  }
  if (!s.ok()) {
    fprintf(stderr, "modelfs mount: %s\n", s.message().c_str());
    return 1;
  }
  chmod(cfg.cache.dir.c_str(), 0700);  // cached weights and metadata are private to the user

  // Destroyed in reverse: the monitor (which samples the engine) stops before the engine goes,
  // and the registry (which the FUSE adapter records into) outlives both.
  MetricsRegistry metrics;
  cfg.mount.metrics = &metrics;
  char real_mp[PATH_MAX];
  if (realpath(cfg.mount.mountpoint.c_str(), real_mp) != nullptr) {
    // Absolute: the daemon changes to "/", and a failed mount must still find it to unmount.
    cfg.mount.mountpoint = real_mp;
    cfg.monitor.mountpoint = real_mp;
  }
  std::unique_ptr<cli::Engine> engine;  // outlives the FUSE loop; ModelFs (owned by it) goes first
  std::unique_ptr<cli::Monitor> monitor;
  auto make_fs = [&]() -> Result<std::unique_ptr<ModelFs>> {
    if (!cfg.log_file.empty()) {
      // fuse_daemonize pointed stderr at /dev/null; the daemon logs to its file instead.
      // Rotated at --log-max-size, so a log inside the cache stays within the quota's reserve.
      Status ls = LogToFile(cfg.log_file, cfg.log_max_bytes);
      if (!ls.ok()) MODELFS_LOG(kWarn, "cannot log to %s: %s", cfg.log_file.c_str(), ls.message().c_str());
    }
    std::string from;
    for (const auto& ep : cfg.fetch.endpoints) {
      if (!from.empty()) from += ", ";
      from += ep;
    }
    if (from.empty()) from = cfg.fetch.endpoint;
    if (dead_mounts > 0) {
      MODELFS_LOG(kWarn, "lazily unmounted %d dead mount(s) at %s before mounting (their daemon was gone)",
                  dead_mounts, cfg.mount.mountpoint.c_str());
    }
    MODELFS_LOG(kInfo, "modelfs %s mounting %s from %s, cache %s (%llu bytes)", kVersion,
                cfg.mount.mountpoint.c_str(), from.c_str(), cfg.cache.dir.c_str(),
                (unsigned long long)cfg.cache.max_bytes);
    auto e = cli::OpenEngine(cfg.fetch, cfg.cache);
    if (!e.ok()) return e.status();
    engine = std::move(e).value();
    // Connections to the endpoints open while the mount comes up, so the first lookup finds one
    // (a single-repo mount resolves its repo at once below: nothing to win there).
    if (engine->mirrors && !cfg.fs.single_repo) engine->mirrors->Warm();
    // After the fork (its threads must live in the daemon) and before the mount answers, so a
    // metrics port already in use fails the mount instead of leaving it unwatched.
    auto mon = cli::Monitor::Start(cfg.monitor, &metrics, engine->mirrors.get(), engine->store.get());
    if (!mon.ok()) return mon.status();
    monitor = std::move(mon).value();
    auto fs = std::make_unique<ModelFs>(cfg.fs, *engine->hub, *engine->store);
    if (cfg.fs.single_repo) {
      Status init = fs->Init();
      if (!init.ok()) return init;
    }
    return fs;
  };
  return ServeFuse(cfg.mount, make_fs);
}

int Unmount(const std::vector<std::string>& args) {
  if (args.size() != 1 || args[0] == "--help" || args[0] == "-h") {
    fprintf(args.size() == 1 ? stdout : stderr,
            "Usage: modelfs unmount MOUNTPOINT   (alias: modelfs umount)\n"
            "Unmounts with fusermount3 -u, or umount2(2) as root.\n"
            "Exit codes: 0 unmounted; 1 could not unmount (busy, not a mount); 2 usage error.\n");
    return args.size() == 1 ? 0 : 2;
  }
  Status s = cli::UnmountPath(args[0], /*lazy=*/false);
  if (s.ok()) return 0;
  fprintf(stderr, "modelfs unmount: %s\n", s.message().c_str());
  return 1;
}

// `modelfs metrics --list`: the metric table as docs/metrics.md shows it (generated from it).
int Metrics(const std::vector<std::string>& args) {
  if (args.size() == 1 && args[0] == "--list") {
    fputs(MetricsMarkdownTable().c_str(), stdout);
    return 0;
  }
  const bool help = args.size() == 1 && (args[0] == "--help" || args[0] == "-h");
  fputs("Usage: modelfs metrics --list   (every metric a mount exports, as a Markdown table)\n"
        "A mount serves them with --metrics-listen ADDR:PORT and writes them with --metrics-file.\n"
        "Exit codes: 0 printed; 2 usage error.\n",
        help ? stdout : stderr);
  return help ? 0 : 2;
}

}  // namespace
}  // namespace modelfs

namespace {

// The subcommands. A new command is a function in its own tools/ file and one row here.
struct Command {
  const char* name;
  int (*run)(const std::vector<std::string>& args);
};
const Command kCommands[] = {
    {"mount", &modelfs::Mount},
    {"unmount", &modelfs::Unmount},
    {"umount", &modelfs::Unmount},
    {"download", &modelfs::cli::RunDownload},
    {"config", &modelfs::cli::RunConfig},
    {"status", &modelfs::cli::RunStatus},
    {"verify", &modelfs::cli::RunVerify},
    {"gc", &modelfs::cli::RunGc},
    {"prefetch", &modelfs::cli::RunPrefetch},
    {"unpin", &modelfs::cli::RunUnpin},
    {"metrics", &modelfs::Metrics},
};

}  // namespace

int main(int argc, char** argv) {
  std::vector<std::string> args(argv + 1, argv + argc);
  if (args.empty() || args[0] == "--help" || args[0] == "-h" || args[0] == "help") {
    fputs(modelfs::cli::MainHelp().c_str(), args.empty() ? stderr : stdout);
    return args.empty() ? 2 : 0;
  }
  if (args[0] == "--version" || args[0] == "version") {
    printf("modelfs %s\n", modelfs::kVersion);
    return 0;
  }
  std::string cmd = args[0];
  args.erase(args.begin());
  for (const auto& c : kCommands)
    if (cmd == c.name) return c.run(args);
  fprintf(stderr, "modelfs: unknown command '%s'\n\n%s", cmd.c_str(), modelfs::cli::MainHelp().c_str());
  return 2;
}
