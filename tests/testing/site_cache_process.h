// SiteCacheProcess: runs deploy/site-cache/run.sh (nginx, the modelfs site cache) in the
// foreground as a child for one test, in a process group of its own so that Kill() takes the
// master and its workers down at once, as a crash or power cut of the cache box would.
//
// RAII: the destructor stops it (SIGTERM to the group, then SIGKILL). The listen port is picked
// free on 127.0.0.1 at construction and kept across Kill()/Start(), so clients configured with
// endpoint() find it again after a restart. Construction never throws: check ok().
#pragma once

#include <sys/types.h>

#include <string>
#include <vector>

namespace modelfs::testing {

class SiteCacheProcess {
 public:
  // upstreams: hub endpoints ("http://127.0.0.1:P"); cache_dir: created if missing; extra_args
  // go to run.sh as they are (e.g. {"--cdn", "http://127.0.0.1:P2"}).
  SiteCacheProcess(std::vector<std::string> upstreams, std::string cache_dir,
                   std::vector<std::string> extra_args = {}, std::string cache_size = "1GiB");
  ~SiteCacheProcess();
  SiteCacheProcess(const SiteCacheProcess&) = delete;
  SiteCacheProcess& operator=(const SiteCacheProcess&) = delete;

  // Starts run.sh and waits (up to 10 s) until the port accepts connections; false on failure
  // (ADD_FAILUREd with run.sh's output).
  bool Start();
  // SIGKILL to the whole group (master and workers), reaped. Idempotent.
  void Kill();
  bool ok() const { return pid_ > 0; }
  int port() const { return port_; }
  std::string endpoint() const { return "http://127.0.0.1:" + std::to_string(port_); }
  const std::string& cache_dir() const { return cache_dir_; }
  // The front's access log (one line per request and per 4 MiB slice), and every log file's text.
  std::string AccessLog() const;
  std::string AllLogs() const;
  // Paths of the cached slice files (under cache_dir/bytes).
  std::vector<std::string> CachedSlices() const;

 private:
  std::vector<std::string> upstreams_, extra_args_;
  std::string cache_dir_, cache_size_, output_;
  int port_ = 0;
  pid_t pid_ = -1;
};

// A TCP port on 127.0.0.1 that nothing listened on a moment ago (bind to port 0, then close).
int PickFreePort();

}  // namespace modelfs::testing
