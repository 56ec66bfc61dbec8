#include "tests/testing/fake_hub_process.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <thread>

#include "common/file_util.h"

namespace modelfs::testing {
namespace {

using nlohmann::json;
using Clock = std::chrono::steady_clock;

// Grace period between SIGTERM and SIGKILL when stopping the server.
constexpr int kStopGraceMs = 3000;

// fork+exec argv with stdout/stderr appended to log_path; returns the pid or -1.
pid_t Spawn(const std::vector<std::string>& argv, const std::string& log_path) {
  std::vector<char*> cargv;
  for (const std::string& a : argv) cargv.push_back(const_cast<char*>(a.c_str()));
  cargv.push_back(nullptr);
  pid_t parent = getpid();
  pid_t pid = fork();
  if (pid < 0) return -1;
  if (pid == 0) {
    // Die with the test process, whatever kills it.
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent) _exit(127);
    int fd = open(log_path.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
    if (fd >= 0) {
      dup2(fd, 1);
      dup2(fd, 2);
      close(fd);
    }
    int devnull = open("/dev/null", O_RDONLY);
    if (devnull >= 0) {
      dup2(devnull, 0);
      close(devnull);
    }
    execvp(cargv[0], cargv.data());
    _exit(127);
  }
  return pid;
}

// Waits for pid to exit within timeout_ms; returns its wait status or -1 if still running.
int WaitFor(pid_t pid, int timeout_ms) {
  auto deadline = Clock::now() + std::chrono::milliseconds(timeout_ms);
  for (;;) {
    int status = 0;
    pid_t r = waitpid(pid, &status, WNOHANG);
    if (r == pid) return status;
    if (r < 0 && errno != EINTR) return 0;  // already reaped
    if (Clock::now() >= deadline) return -1;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
}

}  // namespace

bool LocalHttp(int port, const std::string& method, const std::string& path, const std::string& body,
               LocalHttpResponse* out, int timeout_ms) {
  *out = LocalHttpResponse{};
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return false;
  struct timeval tv;
  tv.tv_sec = timeout_ms / 1000;
  tv.tv_usec = (timeout_ms % 1000) * 1000;
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    close(fd);
    return false;
  }
  std::string req = method + " " + path + " HTTP/1.0\r\nHost: 127.0.0.1:" + std::to_string(port) +
                    "\r\nConnection: close\r\n";
  if (!body.empty() || method == "POST")
    req += "Content-Type: application/json\r\nContent-Length: " + std::to_string(body.size()) + "\r\n";
  req += "\r\n" + body;
  size_t sent = 0;
  while (sent < req.size()) {
    ssize_t n = send(fd, req.data() + sent, req.size() - sent, MSG_NOSIGNAL);
    if (n <= 0) {
      if (n < 0 && errno == EINTR) continue;
      close(fd);
      return false;
    }
    sent += static_cast<size_t>(n);
  }
  std::string resp;
  char buf[65536];
  for (;;) {
    ssize_t n = recv(fd, buf, sizeof(buf), 0);
    if (n == 0) break;
    if (n < 0) {
      if (errno == EINTR) continue;
      close(fd);
      return false;  // timeout or reset
    }
    resp.append(buf, static_cast<size_t>(n));
  }
  close(fd);
  size_t hdr_end = resp.find("\r\n\r\n");
  if (hdr_end == std::string::npos || resp.compare(0, 5, "HTTP/") != 0) return false;
  size_t sp = resp.find(' ');
  if (sp == std::string::npos || sp > hdr_end) return false;
  out->status = atoi(resp.c_str() + sp + 1);
  out->headers = resp.substr(0, hdr_end);
  out->body = resp.substr(hdr_end + 4);
  return out->status > 0;
}

FakeHubProcess::FakeHubProcess(FakeHubOptions opts) : dir_("modelfs-fakehub") {
  for (const FakeRepoSpec& spec : opts.repos) {
    if (!Generate(spec)) return;
  }
  if (!opts.repos.empty()) first_repo_ = opts.repos.front().repo;
  Start(opts);
}

FakeHubProcess::~FakeHubProcess() { Stop(); }

bool FakeHubProcess::Generate(const FakeRepoSpec& spec) {
  std::vector<std::string> argv = {"python3", std::string(MODELFS_SOURCE_DIR) + "/tests/testing/gen_repo.py",
                                   "--root",  dir_.path(),
                                   "--repo",  spec.repo,
                                   "--type",  spec.type,
                                   "--quiet"};
  if (spec.total_size) argv.insert(argv.end(), {"--total-size", std::to_string(spec.total_size)});
  if (spec.shards) argv.insert(argv.end(), {"--shards", std::to_string(spec.shards)});
  if (spec.seed) argv.insert(argv.end(), {"--seed", std::to_string(spec.seed)});
  if (spec.extra_revision) argv.push_back("--extra-revision");
  if (spec.is_private) argv.push_back("--private");
  if (spec.gated) argv.push_back("--gated");
  argv.insert(argv.end(), spec.extra_args.begin(), spec.extra_args.end());
  std::string log = dir_.Sub("gen_repo.log");
  pid_t pid = Spawn(argv, log);
  if (pid < 0) {
    ADD_FAILURE() << "cannot spawn gen_repo.py";
    return false;
  }
  int status = WaitFor(pid, 120000);
  if (status == -1) {
    kill(pid, SIGKILL);
    WaitFor(pid, 5000);
    ADD_FAILURE() << "gen_repo.py timed out";
    return false;
  }
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    std::string out;
    if (!ReadFile(log, &out)) out = "(no log)";
    ADD_FAILURE() << "gen_repo.py failed for " << spec.repo << ":\n" << out;
    return false;
  }
  std::string repo_dir = dir_.path() + "/" + spec.type + "s/" + spec.repo;
  std::string text;
  if (!ReadFile(repo_dir + "/manifest.json", &text)) {
    ADD_FAILURE() << "no manifest.json in " << repo_dir;
    return false;
  }
  json m = json::parse(text, nullptr, false);
  if (m.is_discarded()) {
    ADD_FAILURE() << "bad manifest.json in " << repo_dir;
    return false;
  }
  manifests_[spec.repo] = std::move(m);
  repo_dirs_[spec.repo] = repo_dir;
  return true;
}

bool FakeHubProcess::Start(const FakeHubOptions& opts) {
  std::string ready = dir_.Sub("ready.json");
  std::vector<std::string> argv = {
      "python3",      std::string(MODELFS_SOURCE_DIR) + "/tests/testing/fake_hub.py",
      "--root",       dir_.path(),
      "--port",       "0",
      "--cdn-port",   "0",
      "--ready-file", ready};
  argv.insert(argv.end(), opts.hub_args.begin(), opts.hub_args.end());
  pid_ = Spawn(argv, dir_.Sub("fake_hub.log"));
  if (pid_ < 0) {
    ADD_FAILURE() << "cannot spawn fake_hub.py";
    return false;
  }
  auto deadline = Clock::now() + std::chrono::milliseconds(opts.ready_timeout_ms);
  while (Clock::now() < deadline) {
    std::string text;
    if (ReadFile(ready, &text) && !text.empty()) {
      json r = json::parse(text, nullptr, false);
      if (!r.is_discarded() && r.contains("hub_port") && r.contains("cdn_port")) {
        hub_port_ = r["hub_port"].get<int>();
        cdn_port_ = r["cdn_port"].get<int>();
        return true;
      }
    }
    int status = 0;
    if (waitpid(pid_, &status, WNOHANG) == pid_) {
      pid_ = -1;
      ADD_FAILURE() << "fake_hub.py exited before becoming ready:\n" << ServerOutput();
      return false;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  ADD_FAILURE() << "fake_hub.py not ready after " << opts.ready_timeout_ms << " ms:\n" << ServerOutput();
  Stop();
  return false;
}

void FakeHubProcess::Stop() {
  if (pid_ <= 0) return;
  kill(pid_, SIGTERM);
  if (WaitFor(pid_, kStopGraceMs) == -1) {
    kill(pid_, SIGKILL);
    WaitFor(pid_, 10000);
  }
  pid_ = -1;
  hub_port_ = 0;
}

std::string FakeHubProcess::ServerOutput() const {
  std::string out;
  if (!ReadFile(dir_.Sub("fake_hub.log"), &out)) return "(no server log)";
  if (out.size() > 8000) out = "..." + out.substr(out.size() - 8000);
  return out;
}

const json& FakeHubProcess::manifest(const std::string& repo) const {
  static const json kEmpty = json::object();
  auto it = manifests_.find(RepoKey(repo));
  return it == manifests_.end() ? kEmpty : it->second;
}

std::string FakeHubProcess::CommitOf(const std::string& ref, const std::string& repo) const {
  const json& m = manifest(repo);
  if (!m.contains("refs")) return "";
  auto it = m["refs"].find(ref);
  return it == m["refs"].end() ? "" : it->get<std::string>();
}

const json* FakeHubProcess::FileAt(const std::string& commit, const std::string& path,
                                   const std::string& repo) const {
  const json& m = manifest(repo);
  if (!m.contains("commits") || !m["commits"].contains(commit)) return nullptr;
  for (const json& f : m["commits"][commit]["files"])
    if (f.value("path", "") == path) return &f;
  return nullptr;
}

std::string FakeHubProcess::ContentPath(const std::string& commit, const std::string& path,
                                        const std::string& repo) const {
  const json* f = FileAt(commit, path, repo);
  auto d = repo_dirs_.find(RepoKey(repo));
  if (!f || d == repo_dirs_.end()) return "";
  return d->second + "/" + f->value("content", "");
}

std::string FakeHubProcess::Content(const std::string& commit, const std::string& path,
                                    const std::string& repo) const {
  std::string p = ContentPath(commit, path, repo);
  if (p.empty()) {
    ADD_FAILURE() << "no file " << path << " at " << commit;
    return "";
  }
  return ReadFileOrDie(p);
}

json FakeHubProcess::AdminJson(const std::string& method, const std::string& path, const std::string& body) {
  LocalHttpResponse r;
  if (!ok() || !LocalHttp(hub_port_, method, path, body, &r)) {
    ADD_FAILURE() << "admin " << method << " " << path << " failed";
    return json();
  }
  if (r.status != 200) {
    ADD_FAILURE() << "admin " << method << " " << path << ": HTTP " << r.status << " " << r.body;
    return json();
  }
  json j = json::parse(r.body, nullptr, false);
  if (j.is_discarded()) {
    ADD_FAILURE() << "admin " << path << ": bad JSON";
    return json();
  }
  return j;
}

bool FakeHubProcess::SetFaults(const json& faults) {
  return !AdminJson("POST", "/_admin/faults", faults.dump()).is_null();
}
bool FakeHubProcess::SetConfig(const json& config) {
  return !AdminJson("POST", "/_admin/config", config.dump()).is_null();
}
bool FakeHubProcess::ClearLog() { return !AdminJson("POST", "/_admin/log/clear", "").is_null(); }
json FakeHubProcess::Log() { return AdminJson("GET", "/_admin/log", ""); }
json FakeHubProcess::Stats() { return AdminJson("GET", "/_admin/stats", ""); }
bool FakeHubProcess::ClearStats() { return !AdminJson("POST", "/_admin/stats/clear", "").is_null(); }

}  // namespace modelfs::testing
