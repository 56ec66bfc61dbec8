#include "tools/monitor.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <signal.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <nlohmann/json.hpp>

#include "cache/disk_blob_store.h"
#include "common/file_util.h"
#include "common/log.h"
#include "fetch/mirror_set.h"
#include "fetch/protocol.h"

namespace modelfs::cli {
namespace {

double SteadySeconds() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

double WallSeconds() {
  return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
}

// A mirror's label in metrics: host:port of its endpoint (bounded by the configuration).
std::string MirrorLabel(const std::string& endpoint) {
  Result<protocol::Url> u = protocol::ParseUrl(endpoint);
  return u.ok() ? u->HostPort() : endpoint;
}

std::string HumanRate(double Bps) {
  char buf[32];
  if (Bps >= 1048576) snprintf(buf, sizeof buf, "%.1f MiB/s", Bps / 1048576);
  else snprintf(buf, sizeof buf, "%.1f KiB/s", Bps / 1024);
  return buf;
}

bool WriteAll(int fd, const char* p, size_t n) {
  while (n > 0) {
    ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) return false;
    p += w;
    n -= static_cast<size_t>(w);
  }
  return true;
}

bool IsLoopback(const sockaddr* sa) {
  if (sa->sa_family == AF_INET) {
    return (ntohl(reinterpret_cast<const sockaddr_in*>(sa)->sin_addr.s_addr) >> 24) == 127;
  }
  if (sa->sa_family == AF_INET6) {
    const in6_addr& a = reinterpret_cast<const sockaddr_in6*>(sa)->sin6_addr;
    if (IN6_IS_ADDR_LOOPBACK(&a)) return true;
    // ::ffff:127.x.y.z
    return IN6_IS_ADDR_V4MAPPED(&a) && a.s6_addr[12] == 127;
  }
  return false;
}

const char* Reason(int code) {
  switch (code) {
    case 200: return "OK";
    case 400: return "Bad Request";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 408: return "Request Timeout";
    default: return "Error";
  }
}

}  // namespace

// ---- RateWindow / AlertSet.

void RateWindow::Add(const WindowSample& s) {
  if (!samples_.empty()) {
    const WindowSample& last = samples_.back();
    if (s.t_s < last.t_s || s.ok < last.ok || s.failed < last.failed || s.bytes < last.bytes) samples_.clear();
  }
  samples_.push_back(s);
  while (samples_.size() > 1 && samples_.front().t_s < s.t_s - window_s_) samples_.pop_front();
}

WindowRates RateWindow::Rates() const {
  WindowRates r;
  if (samples_.size() < 2) return r;
  const WindowSample& a = samples_.front();
  const WindowSample& b = samples_.back();
  r.span_s = b.t_s - a.t_s;
  const uint64_t ok = b.ok - a.ok, failed = b.failed - a.failed;
  r.attempts = ok + failed;
  r.success_ratio = r.attempts ? static_cast<double>(ok) / static_cast<double>(r.attempts) : 1.0;
  r.speed_Bps = static_cast<double>(b.bytes - a.bytes) / std::max(r.span_s, window_s_);
  return r;
}

AlertSet::AlertSet(double min_success_percent, uint64_t max_bandwidth_Bps, uint64_t min_attempts)
    : min_ratio_(min_success_percent / 100.0), max_Bps_(max_bandwidth_Bps), min_attempts_(min_attempts) {
  states_.resize(2);
  states_[0].name = "low_success_rate";
  states_[0].enabled = min_success_percent > 0;
  states_[1].name = "high_bandwidth";
  states_[1].enabled = max_bandwidth_Bps > 0;
}

std::vector<AlertState> AlertSet::Evaluate(const WindowRates& r, double now_s) {
  std::vector<AlertState> changed;
  char buf[256];
  auto update = [&](AlertState& a, bool active, const std::string& msg) {
    if (active) a.message = msg;
    if (active == a.active) return;
    a.active = active;
    a.since_s = now_s;
    if (!active) {
      a.message = msg;
    }
    changed.push_back(a);
  };
  if (states_[0].enabled) {
    const bool low = r.attempts >= min_attempts_ && r.success_ratio < min_ratio_;
    snprintf(buf, sizeof buf, "download success rate %.1f%% over the last %.0f s (%llu calls; threshold %.1f%%)",
             100.0 * r.success_ratio, r.span_s, (unsigned long long)r.attempts, 100.0 * min_ratio_);
    update(states_[0], low, buf);
  }
  if (states_[1].enabled) {
    const bool high = r.speed_Bps > static_cast<double>(max_Bps_);
    snprintf(buf, sizeof buf, "bandwidth %s averaged over the window (threshold %s)",
             HumanRate(r.speed_Bps).c_str(), HumanRate(static_cast<double>(max_Bps_)).c_str());
    update(states_[1], high, buf);
  }
  return changed;
}

// ---- Listener.

Status ParseListenAddress(const std::string& text, std::string* host, int* port) {
  std::string h, p;
  if (!text.empty() && text[0] == '[') {
    size_t close = text.find(']');
    if (close == std::string::npos || close + 1 >= text.size() || text[close + 1] != ':')
      return Status::InvalidArgument("listen address must be HOST:PORT or [IPv6]:PORT, not '" + text + "'");
    h = text.substr(1, close - 1);
    p = text.substr(close + 2);
  } else {
    size_t colon = text.rfind(':');
    if (colon == std::string::npos || text.find(':') != colon)
      return Status::InvalidArgument("listen address must be HOST:PORT or [IPv6]:PORT, not '" + text + "'");
    h = text.substr(0, colon);
    p = text.substr(colon + 1);
  }
  if (h.empty()) {
    return Status::InvalidArgument("listen address '" + text + "' names no host: write it out (127.0.0.1:PORT "
                                   "for this machine only)");
  }
  char* end = nullptr;
  long v = strtol(p.c_str(), &end, 10);
  if (p.empty() || *end != '\0' || v < 0 || v > 65535)
    return Status::InvalidArgument("bad port in listen address '" + text + "'");
  *host = h;
  *port = static_cast<int>(v);
  return Status::Ok();
}

Result<std::unique_ptr<MetricsServer>> MetricsServer::Start(const std::string& addr, Handler handler,
                                                            int io_timeout_ms) {
  std::string host;
  int port = 0;
  Status s = ParseListenAddress(addr, &host, &port);
  if (!s.ok()) return s;
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_NUMERICSERV;
  addrinfo* res = nullptr;
  int rc = getaddrinfo(host.c_str(), std::to_string(port).c_str(), &hints, &res);
  if (rc != 0 || res == nullptr) {
    return Status::InvalidArgument("cannot resolve listen address '" + addr + "': " + gai_strerror(rc));
  }
  std::unique_ptr<MetricsServer> srv(new MetricsServer());
  srv->handler_ = std::move(handler);
  srv->io_timeout_ms_ = io_timeout_ms;
  int fd = -1;
  std::string err;
  for (addrinfo* ai = res; ai; ai = ai->ai_next) {
    fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, ai->ai_protocol);
    if (fd < 0) continue;
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (bind(fd, ai->ai_addr, ai->ai_addrlen) == 0 && listen(fd, 16) == 0) {
      srv->loopback_ = IsLoopback(ai->ai_addr);
      break;
    }
    err = strerror(errno);
    close(fd);
    fd = -1;
  }
  freeaddrinfo(res);
  if (fd < 0) return Status::IoError("cannot listen on " + addr + ": " + err);
  srv->listen_fd_ = fd;
  sockaddr_storage bound{};
  socklen_t len = sizeof bound;
  getsockname(fd, reinterpret_cast<sockaddr*>(&bound), &len);
  char ip[INET6_ADDRSTRLEN] = "";
  if (bound.ss_family == AF_INET6) {
    auto* a6 = reinterpret_cast<sockaddr_in6*>(&bound);
    inet_ntop(AF_INET6, &a6->sin6_addr, ip, sizeof ip);
    srv->port_ = ntohs(a6->sin6_port);
    srv->address_ = std::string("[") + ip + "]:" + std::to_string(srv->port_);
  } else {
    auto* a4 = reinterpret_cast<sockaddr_in*>(&bound);
    inet_ntop(AF_INET, &a4->sin_addr, ip, sizeof ip);
    srv->port_ = ntohs(a4->sin_port);
    srv->address_ = std::string(ip) + ":" + std::to_string(srv->port_);
  }
  if (pipe2(srv->wake_, O_CLOEXEC) != 0) return Status::IoError("pipe: " + std::string(strerror(errno)));
  if (!srv->loopback_) {
    MODELFS_LOG(kWarn, "metrics listener on non-loopback address %s: anyone who can reach it sees the "
                "mirrors and the files being read (no authentication)", srv->address_.c_str());
  }
  MetricsServer* raw = srv.get();
  srv->thread_ = std::thread([raw] { raw->Loop(); });
  return srv;
}

MetricsServer::~MetricsServer() {
  if (thread_.joinable()) {
    char c = 1;
    while (write(wake_[1], &c, 1) < 0 && errno == EINTR) {
    }
    thread_.join();
  }
  for (int fd : {listen_fd_, wake_[0], wake_[1]})
    if (fd >= 0) close(fd);
}

void MetricsServer::Loop() {
  for (;;) {
    pollfd p[2] = {{listen_fd_, POLLIN, 0}, {wake_[0], POLLIN, 0}};
    int n = poll(p, 2, -1);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 || (p[1].revents & POLLIN)) return;
    if (!(p[0].revents & POLLIN)) continue;
    int fd = accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
    if (fd < 0) continue;
    Serve(fd);
    close(fd);
  }
}

void MetricsServer::Serve(int fd) {
  // Bounded writes too: a client that never reads cannot hold the thread past the timeout.
  timeval tv{io_timeout_ms_ / 1000, (io_timeout_ms_ % 1000) * 1000};
  setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(io_timeout_ms_);
  std::string req;
  bool complete = false;
  while (req.size() < kMaxRequestBytes) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now()).count();
    if (left <= 0) break;
    pollfd p{fd, POLLIN, 0};
    int n = poll(&p, 1, static_cast<int>(left));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    char buf[1024];
    ssize_t r = recv(fd, buf, std::min(sizeof buf, kMaxRequestBytes - req.size()), 0);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) break;
    req.append(buf, static_cast<size_t>(r));
    if (req.find("\r\n\r\n") != std::string::npos || req.find("\n\n") != std::string::npos) {
      complete = true;
      break;
    }
  }
  if (req.empty()) return;  // a client that sent nothing: just hang up
  int code = 200;
  std::string type = "text/plain; charset=utf-8", body;
  bool head = false;
  if (!complete) {
    code = req.size() >= kMaxRequestBytes ? 400 : 408;
  } else {
    const std::string line = req.substr(0, req.find_first_of("\r\n"));
    const size_t sp1 = line.find(' ');
    const size_t sp2 = sp1 == std::string::npos ? sp1 : line.find(' ', sp1 + 1);
    if (sp1 == std::string::npos || sp2 == std::string::npos || line.compare(sp2 + 1, 5, "HTTP/") != 0 ||
        line.find(' ', sp2 + 1) != std::string::npos) {
      code = 400;
    } else {
      const std::string method = line.substr(0, sp1);
      std::string path = line.substr(sp1 + 1, sp2 - sp1 - 1);
      path = path.substr(0, path.find('?'));
      head = method == "HEAD";
      if (method != "GET" && !head) {
        code = 405;
      } else if (path.empty() || path[0] != '/') {
        code = 400;
      } else if (!handler_(path, &type, &body)) {
        code = 404;
        type = "text/plain; charset=utf-8";
        body.clear();
      }
    }
  }
  if (code != 200) body = std::to_string(code) + " " + Reason(code) + "\n";
  std::string resp = "HTTP/1.0 " + std::to_string(code) + " " + Reason(code) + "\r\nContent-Type: " + type +
                     "\r\nContent-Length: " + std::to_string(body.size()) + "\r\nConnection: close\r\n";
  if (code == 405) resp += "Allow: GET, HEAD\r\n";
  resp += "\r\n";
  if (!head) resp += body;
  WriteAll(fd, resp.data(), resp.size());
}

// ---- Monitor.

std::string StatusFileName(int pid) { return "status-" + std::to_string(pid) + ".json"; }

int StatusFilePid(const std::string& name) {
  int pid = 0;
  char tail[8] = "";
  if (sscanf(name.c_str(), "status-%d.%5s", &pid, tail) != 2 || std::string(tail) != "json" ||
      name != StatusFileName(pid))
    return 0;
  return pid;
}

Monitor::Monitor(const MonitorOptions& opts, MetricsRegistry* metrics, const MirrorSet* mirrors,
                 const DiskBlobStore* store)
    : opts_(opts), metrics_(metrics), mirrors_(mirrors), store_(store),
      window_(static_cast<double>(std::max<int64_t>(opts.window_s, 1))),
      alerts_(opts.min_success_percent, opts.max_bandwidth_Bps) {}

Result<std::unique_ptr<Monitor>> Monitor::Start(const MonitorOptions& opts, MetricsRegistry* metrics,
                                                const MirrorSet* mirrors, const DiskBlobStore* store) {
  std::unique_ptr<Monitor> m(new Monitor(opts, metrics, mirrors, store));
  if (!opts.status_dir.empty()) {
    // Without the directory the status file cannot be written; the mount still runs, and the
    // failed writes are logged (once) by SampleNow.
    if (Status s = MkdirP(opts.status_dir, 0700); !s.ok()) MODELFS_LOG(kWarn, "%s", s.ToString().c_str());
    // Files of daemons that died without cleaning up (kill -9, power cut): `modelfs status`
    // ignores them anyway (dead pid), but they should not pile up.
    if (DIR* d = opendir(opts.status_dir.c_str())) {
      while (dirent* e = readdir(d)) {
        const int pid = StatusFilePid(e->d_name);
        if (pid > 0 && pid != getpid() && kill(pid, 0) != 0 && errno == ESRCH)
          unlink((opts.status_dir + "/" + e->d_name).c_str());
      }
      closedir(d);
    }
    m->status_file_ = opts.status_dir + "/" + StatusFileName(getpid());
  }
  // The first sample sets the baseline and writes the files before anyone asks for them.
  m->SampleNow();
  if (!opts.listen.empty()) {
    Monitor* raw = m.get();
    auto srv = MetricsServer::Start(opts.listen, [raw](const std::string& path, std::string* type, std::string* body) {
      if (path == "/metrics") {
        // Prometheus text format 0.0.4 (what every scraper reads).
        *type = "text/plain; version=0.0.4; charset=utf-8";
        *body = raw->metrics_->RenderPrometheus();
        return true;
      }
      if (path == "/status") {
        *type = "application/json";
        *body = raw->StatusJson();
        return true;
      }
      return false;
    });
    if (!srv.ok()) return srv.status();
    m->server_ = std::move(srv).value();
    MODELFS_LOG(kInfo, "serving metrics on http://%s/metrics", m->server_->address().c_str());
    m->SampleNow();  // the status names the bound address
  }
  Monitor* raw = m.get();
  m->thread_ = std::thread([raw] { raw->Loop(); });
  return m;
}

Monitor::~Monitor() {
  {
    std::lock_guard<std::mutex> lock(stop_mu_);
    stop_ = true;
  }
  stop_cv_.notify_all();
  if (thread_.joinable()) thread_.join();
  server_.reset();
  // A status file left behind would claim a live mount until its pid is reused; remove it.
  if (!status_file_.empty()) unlink(status_file_.c_str());
}

void Monitor::Loop() {
  std::unique_lock<std::mutex> lock(stop_mu_);
  while (!stop_) {
    if (stop_cv_.wait_for(lock, std::chrono::milliseconds(std::max(opts_.interval_ms, 10)),
                          [this] { return stop_; }))
      break;
    lock.unlock();
    SampleNow();
    lock.lock();
  }
}

std::string Monitor::StatusJson() const {
  std::lock_guard<std::mutex> lock(status_mu_);
  return status_json_;
}

void Monitor::SampleNow() {
  std::lock_guard<std::mutex> sample_lock(sample_mu_);
  const double now = SteadySeconds();
  MetricsRegistry& r = *metrics_;
  nlohmann::json j;
  j["pid"] = getpid();
  j["updated_unix"] = WallSeconds();
  j["mountpoint"] = opts_.mountpoint;
  j["metrics_listen"] = server_ ? server_->address() : "";
  j["metrics_file"] = opts_.metrics_file;
  j["interval_s"] = opts_.interval_ms / 1000.0;

  if (store_) {
    const CacheStats c = store_->Stats();
    r.Value(Metric::kCacheHitBytes)->Set(static_cast<double>(c.hit_bytes));
    r.Value(Metric::kCacheMissBytes)->Set(static_cast<double>(c.miss_bytes));
    r.Value(Metric::kCacheFetchedBytes)->Set(static_cast<double>(c.fetched_bytes));
    r.Value(Metric::kCacheEvictedBytes)->Set(static_cast<double>(c.evicted_bytes));
    r.Value(Metric::kCacheUncachedBytes)->Set(static_cast<double>(c.uncached_bytes));
    r.Value(Metric::kCacheCorruptBlocks)->Set(static_cast<double>(c.corrupt_blocks));
    r.Value(Metric::kCacheUsedBytes)->Set(static_cast<double>(c.used_bytes));
    r.Value(Metric::kCacheQuotaBytes)->Set(static_cast<double>(c.quota_bytes));
    r.Value(Metric::kVerifyPasses)->Set(static_cast<double>(c.verified));
    r.Value(Metric::kVerifyFailures)->Set(static_cast<double>(c.verify_failures));
    r.Value(Metric::kCachePeakUsedBytes)->Set(static_cast<double>(c.peak_used_bytes));
    r.Value(Metric::kCacheRefusedBytes)->Set(static_cast<double>(c.refused_bytes));
    r.Value(Metric::kCacheDistrustedRefetches)->Set(static_cast<double>(c.distrusted_refetches));
    r.Value(Metric::kCacheHashedBytes)->Set(static_cast<double>(c.hashed_bytes));
    r.Value(Metric::kCacheSplicedBytes)->Set(static_cast<double>(c.spliced_bytes));
    r.Value(Metric::kCacheChunkFetches)->Set(static_cast<double>(c.fetches));
    j["cache"] = {{"hit_bytes", c.hit_bytes},   {"miss_bytes", c.miss_bytes}, {"used_bytes", c.used_bytes},
                  {"quota_bytes", c.quota_bytes}, {"verified", c.verified}, {"verify_failures", c.verify_failures},
                  {"peak_used_bytes", c.peak_used_bytes}, {"refused_bytes", c.refused_bytes},
                  {"distrusted_refetches", c.distrusted_refetches}, {"overhead_bytes", c.overhead_bytes},
                  {"hashed_bytes", c.hashed_bytes}, {"spliced_bytes", c.spliced_bytes}};
  }

  WindowSample ws;
  ws.t_s = now;
  nlohmann::json mirrors = nlohmann::json::array(), transfers = nlohmann::json::array();
  double reads_in_flight = 0, bytes_in_flight = 0;
  if (mirrors_) {
    const MirrorSetStats st = mirrors_->Stats();
    const FetchStats total = st.Total();
    for (const MirrorStats& m : st.mirrors) {
      const std::string label = MirrorLabel(m.endpoint);
      r.Value(Metric::kFetchBytes, {label})->Set(static_cast<double>(m.http.bytes_received));
      r.Value(Metric::kHttpRequests, {label})->Set(static_cast<double>(m.http.requests));
      r.Value(Metric::kFetchCalls, {label, "ok"})->Set(static_cast<double>(m.calls_ok));
      r.Value(Metric::kFetchCalls, {label, "failed"})->Set(static_cast<double>(m.calls_failed));
      r.Value(Metric::kMirrorHealthy, {label})->Set(m.healthy ? 1 : 0);
      r.Value(Metric::kMirrorLatency, {label})->Set(m.latency_ms / 1000.0);
      r.Value(Metric::kMirrorThroughput, {label})->Set(m.throughput_Bps);
      r.Value(Metric::kMirrorReadBytes, {label})->Set(static_cast<double>(m.bytes_read));
      r.Value(Metric::kFetchResolves, {label})->Set(static_cast<double>(m.http.resolves));
      ws.ok += m.calls_ok;
      ws.failed += m.calls_failed;
      mirrors.push_back({{"mirror", label}, {"healthy", m.healthy}, {"latency_ms", m.latency_ms},
                         {"throughput_Bps", m.throughput_Bps}, {"bytes", m.http.bytes_received},
                         {"read_bytes", m.bytes_read}, {"bad_files", m.bad_files},
                         {"calls_ok", m.calls_ok}, {"calls_failed", m.calls_failed}});
    }
    ws.failed += total.retries;  // a retried attempt failed, even if the call then succeeded
    ws.bytes = total.bytes_received;
    r.Value(Metric::kFetchFailures, {"http"})->Set(static_cast<double>(total.failures));
    r.Value(Metric::kFetchFailures, {"rate_limited"})->Set(static_cast<double>(st.rate_limited));
    r.Value(Metric::kFetchFailures, {"bad_source"})->Set(static_cast<double>(st.bad_source_reports));
    r.Value(Metric::kFetchRetries)->Set(static_cast<double>(total.retries));
    r.Value(Metric::kMirrorFailovers)->Set(static_cast<double>(st.failovers));
    for (const TransferInfo& t : mirrors_->Transfers()) {
      reads_in_flight += t.reads_in_flight;
      bytes_in_flight += static_cast<double>(t.bytes_in_flight);
      transfers.push_back({{"file", t.file}, {"mirror", t.mirror}, {"bytes", t.bytes_done},
                           {"bytes_in_flight", t.bytes_in_flight}, {"reads_in_flight", t.reads_in_flight},
                           {"failed_reads", t.failed_reads}, {"elapsed_s", t.elapsed_s}, {"idle_s", t.idle_s},
                           {"speed_Bps", t.speed_Bps}});
    }
  }
  r.Value(Metric::kReadsInFlight)->Set(reads_in_flight);
  r.Value(Metric::kBytesInFlight)->Set(bytes_in_flight);
  double speed = 0;
  if (last_t_ >= 0 && now > last_t_ && ws.bytes >= last_bytes_) {
    speed = static_cast<double>(ws.bytes - last_bytes_) / (now - last_t_);
  }
  last_t_ = now;
  last_bytes_ = ws.bytes;
  r.Value(Metric::kTransferSpeed)->Set(speed);

  window_.Add(ws);
  const WindowRates rates = window_.Rates();
  r.Value(Metric::kWindowSpeed)->Set(rates.speed_Bps);
  r.Value(Metric::kWindowSuccessRatio)->Set(rates.success_ratio);
  for (const AlertState& a : alerts_.Evaluate(rates, now)) {
    if (a.active) {
      MODELFS_LOG(kWarn, "alert %s: %s", a.name.c_str(), a.message.c_str());
    } else {
      MODELFS_LOG(kWarn, "alert %s cleared: %s", a.name.c_str(), a.message.c_str());
    }
  }
  nlohmann::json alerts = nlohmann::json::array();
  for (const AlertState& a : alerts_.states()) {
    if (!a.enabled) continue;
    r.Value(Metric::kAlertActive, {a.name})->Set(a.active ? 1 : 0);
    alerts.push_back({{"alert", a.name}, {"active", a.active}, {"message", a.message},
                      {"for_s", a.since_s > 0 ? now - a.since_s : 0.0}});
  }
  // Error replies are counted by the FUSE adapter as they happen (fs/error_reporter.h), not
  // sampled: list the series it created.
  nlohmann::json errors = nlohmann::json::array();
  for (const auto& [labels, count] : r.Values(Metric::kFuseErrors))
    errors.push_back({{"op", labels[0]}, {"errno", labels[1]}, {"count", static_cast<uint64_t>(count)}});
  j["fuse_errors"] = errors;
  j["speed_Bps"] = speed;
  j["window"] = {{"window_s", opts_.window_s}, {"span_s", rates.span_s}, {"attempts", rates.attempts},
                 {"success_ratio", rates.success_ratio}, {"speed_Bps", rates.speed_Bps}};
  j["alerts"] = alerts;
  j["mirrors"] = mirrors;
  j["reads_in_flight"] = reads_in_flight;
  j["transfers"] = transfers;
  std::string text = j.dump(2, ' ', false, nlohmann::json::error_handler_t::replace) + "\n";
  if (text.size() > kStatusFileMax) {
    // Held to kStatusFileMax so the run directory stays within the quota's reserve for it
    // (kStatusDiskBound): the transfers (up to 64) go first, then the indentation.
    j["transfers"] = nlohmann::json::array();
    j["transfers_dropped"] = transfers.size();
    text = j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) + "\n";
    if (text.size() > kStatusFileMax) text = "{\"error\":\"status larger than its bound\"}\n";
  }
  {
    std::lock_guard<std::mutex> lock(status_mu_);
    status_json_ = text;
  }
  // Failures to write are logged once per change of outcome, not every second.
  auto write = [](const std::string& path, const std::string& content, unsigned mode, bool* failing) {
    // kProcess: these files describe the running process; after a crash a stale or missing one is
    // right (the pid check in `modelfs status` tells a stale one apart), and an fsync every second
    // would wear an edge box's flash for nothing.
    Status s = WriteFileAtomic(path, content, Durability::kProcess, mode);
    if (!s.ok() && !*failing) MODELFS_LOG(kWarn, "%s", s.ToString().c_str());
    *failing = !s.ok();
  };
  if (!status_file_.empty()) write(status_file_, text, 0600, &status_file_failing_);
  // 0644: node_exporter usually runs as another user; the metrics hold no secret.
  if (!opts_.metrics_file.empty()) write(opts_.metrics_file, r.RenderPrometheus(), 0644, &metrics_file_failing_);
}

}  // namespace modelfs::cli
