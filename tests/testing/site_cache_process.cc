#include "tests/testing/site_cache_process.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

namespace modelfs::testing {
namespace {

std::string Slurp(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

bool PortAccepts(int port) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) return false;
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<uint16_t>(port));
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  bool ok = connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0;
  close(fd);
  return ok;
}

}  // namespace

int PickFreePort() {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof a;
  int port = 0;
  if (fd >= 0 && bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0 &&
      getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) == 0)
    port = ntohs(a.sin_port);
  if (fd >= 0) close(fd);
  return port;
}

SiteCacheProcess::SiteCacheProcess(std::vector<std::string> upstreams, std::string cache_dir,
                                   std::vector<std::string> extra_args, std::string cache_size)
    : upstreams_(std::move(upstreams)),
      extra_args_(std::move(extra_args)),
      cache_dir_(std::move(cache_dir)),
      cache_size_(std::move(cache_size)) {
  std::filesystem::create_directories(cache_dir_);
  output_ = cache_dir_ + "/run.out";
  port_ = PickFreePort();
  if (port_ > 0) Start();
}

SiteCacheProcess::~SiteCacheProcess() {
  if (pid_ > 0) {
    kill(-pid_, SIGTERM);
    int st = 0;
    for (int i = 0; i < 100 && waitpid(pid_, &st, WNOHANG) == 0; ++i)
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  Kill();
}

bool SiteCacheProcess::Start() {
  if (pid_ > 0) return true;
  std::vector<std::string> args = {"/bin/bash", std::string(MODELFS_SOURCE_DIR) + "/deploy/site-cache/run.sh",
                                   "--listen", "127.0.0.1:" + std::to_string(port_), "--cache-dir", cache_dir_,
                                   "--cache-size", cache_size_};
  // Workers as root: the test's temporary directories are private to it.
  if (geteuid() == 0) args.insert(args.end(), {"--user", "root"});
  for (const auto& u : upstreams_) args.insert(args.end(), {"--upstream", u});
  args.insert(args.end(), extra_args_.begin(), extra_args_.end());
  pid_ = fork();
  if (pid_ == 0) {
    setpgid(0, 0);
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    int fd = open(output_.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
    dup2(fd, 1);
    dup2(fd, 2);
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
    argv.push_back(nullptr);
    execv(argv[0], argv.data());
    _exit(127);
  }
  setpgid(pid_, pid_);  // also from here, so Kill() works even before the child ran
  for (int i = 0; i < 500; ++i) {
    if (PortAccepts(port_)) return true;
    int st = 0;
    if (waitpid(pid_, &st, WNOHANG) == pid_) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  ADD_FAILURE() << "site cache did not come up on port " << port_ << ":\n" << Slurp(output_);
  Kill();
  return false;
}

void SiteCacheProcess::Kill() {
  if (pid_ <= 0) return;
  kill(-pid_, SIGKILL);
  int st = 0;
  waitpid(pid_, &st, 0);
  // Workers are the master's children; once the group is gone they are reaped by init. Wait until
  // the port is free so a restart can bind it.
  for (int i = 0; i < 250 && PortAccepts(port_); ++i) std::this_thread::sleep_for(std::chrono::milliseconds(20));
  pid_ = -1;
}

std::string SiteCacheProcess::AccessLog() const { return Slurp(cache_dir_ + "/logs/access.log"); }

std::string SiteCacheProcess::AllLogs() const {
  std::string out;
  for (const char* f : {"access.log", "hub.log", "error.log"}) out += Slurp(cache_dir_ + "/logs/" + f);
  return out + Slurp(output_);
}

std::vector<std::string> SiteCacheProcess::CachedSlices() const {
  std::vector<std::string> out;
  std::error_code ec;
  for (const auto& e : std::filesystem::recursive_directory_iterator(cache_dir_ + "/bytes", ec))
    if (e.is_regular_file()) out.push_back(e.path().string());
  return out;
}

}  // namespace modelfs::testing
