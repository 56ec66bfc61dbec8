// tools/monitor.h: the rate window and alerts driven by injected samples (no clock), the listener
// over a real loopback socket (200 for /metrics, 404, 400, 405, a silent client), and the monitor
// writing its status and metrics files atomically.
#include "tools/monitor.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <chrono>
#include <nlohmann/json.hpp>
#include <thread>

#include "tests/testing/fake_hub_process.h"
#include "tools/cmd_cache.h"
#include "tests/testing/temp_dir.h"

namespace modelfs::cli {
namespace {

using Clock = std::chrono::steady_clock;

// ---- RateWindow.

TEST(RateWindowTest, RatesOverTheWindowOnly) {
  RateWindow w(10);
  EXPECT_EQ(w.Rates().attempts, 0u);
  EXPECT_EQ(w.Rates().success_ratio, 1.0);
  // t = 0..20 s, one sample a second: 10 ok calls/s, 1 failure/s from t = 11 on, 1 MB/s.
  for (int t = 0; t <= 20; ++t) {
    const uint64_t failed = t > 10 ? static_cast<uint64_t>(t - 10) : 0;
    w.Add({static_cast<double>(t), 10ull * t, failed, 1000000ull * t});
  }
  WindowRates r = w.Rates();
  EXPECT_DOUBLE_EQ(r.span_s, 10);         // samples t = 10..20
  EXPECT_EQ(r.attempts, 100u + 10u);      // 100 ok + 10 failed, none from before t = 10
  EXPECT_NEAR(r.success_ratio, 100.0 / 110, 1e-9);
  EXPECT_DOUBLE_EQ(r.speed_Bps, 1e6);
}

TEST(RateWindowTest, StartupBurstIsAveragedOverTheWholeWindow) {
  RateWindow w(60);
  w.Add({0, 0, 0, 0});
  w.Add({1, 0, 0, 60000000});  // 60 MB in the first second
  EXPECT_DOUBLE_EQ(w.Rates().speed_Bps, 1e6);  // 60 MB / 60 s, not 60 MB/s
}

TEST(RateWindowTest, CounterResetRestartsTheWindow) {
  RateWindow w(10);
  w.Add({0, 100, 0, 5000});
  w.Add({1, 5, 0, 10});  // smaller: a restarted source, not a negative rate
  EXPECT_EQ(w.Rates().attempts, 0u);
  w.Add({2, 15, 0, 20});
  EXPECT_EQ(w.Rates().attempts, 10u);
}

// ---- AlertSet.

WindowRates Rates(uint64_t attempts, double ratio, double Bps) {
  WindowRates r;
  r.span_s = 60;
  r.attempts = attempts;
  r.success_ratio = ratio;
  r.speed_Bps = Bps;
  return r;
}

TEST(AlertSetTest, LowSuccessRateRaisesOnceAndClearsOnce) {
  AlertSet a(90, 0);
  EXPECT_TRUE(a.states()[0].enabled);
  EXPECT_FALSE(a.states()[1].enabled);  // bandwidth alert off (0)
  EXPECT_TRUE(a.Evaluate(Rates(100, 0.95, 0), 1).empty());
  auto ch = a.Evaluate(Rates(100, 0.80, 0), 2);
  ASSERT_EQ(ch.size(), 1u);
  EXPECT_EQ(ch[0].name, "low_success_rate");
  EXPECT_TRUE(ch[0].active);
  EXPECT_NE(ch[0].message.find("80.0%"), std::string::npos) << ch[0].message;
  EXPECT_TRUE(a.Evaluate(Rates(100, 0.70, 0), 3).empty());  // still active: no new line
  EXPECT_TRUE(a.states()[0].active);
  ch = a.Evaluate(Rates(100, 0.99, 0), 4);
  ASSERT_EQ(ch.size(), 1u);
  EXPECT_FALSE(ch[0].active);
  EXPECT_FALSE(a.states()[0].active);
  EXPECT_EQ(a.states()[0].since_s, 4);
}

TEST(AlertSetTest, TooFewCallsNeverRaiseLowSuccessRate) {
  AlertSet a(90, 0);
  EXPECT_TRUE(a.Evaluate(Rates(AlertSet::kMinAttempts - 1, 0.0, 0), 1).empty());
  EXPECT_EQ(a.Evaluate(Rates(AlertSet::kMinAttempts, 0.0, 0), 2).size(), 1u);
}

TEST(AlertSetTest, HighBandwidthThreshold) {
  AlertSet a(0, 100000000);  // success-rate alert off, 100 MB/s
  EXPECT_FALSE(a.states()[0].enabled);
  EXPECT_TRUE(a.Evaluate(Rates(1000, 0.0, 99e6), 1).empty());  // off: a 0% success rate is ignored
  auto ch = a.Evaluate(Rates(0, 1, 150e6), 2);
  ASSERT_EQ(ch.size(), 1u);
  EXPECT_EQ(ch[0].name, "high_bandwidth");
  EXPECT_TRUE(ch[0].active);
  ch = a.Evaluate(Rates(0, 1, 50e6), 3);
  ASSERT_EQ(ch.size(), 1u);
  EXPECT_FALSE(ch[0].active);
}

// ---- Listen address.

TEST(StatusFileTest, NamesRoundTrip) {
  EXPECT_EQ(StatusFileName(123), "status-123.json");
  EXPECT_EQ(StatusFilePid("status-123.json"), 123);
  EXPECT_EQ(StatusFilePid("status-123.json.tmp.5"), 0);
  EXPECT_EQ(StatusFilePid("status-0123.json"), 0);
  EXPECT_EQ(StatusFilePid("status.json"), 0);
}

TEST(ListenAddressTest, Parses) {
  std::string h;
  int p = -1;
  ASSERT_TRUE(ParseListenAddress("127.0.0.1:9101", &h, &p).ok());
  EXPECT_EQ(h, "127.0.0.1");
  EXPECT_EQ(p, 9101);
  ASSERT_TRUE(ParseListenAddress("[::1]:0", &h, &p).ok());
  EXPECT_EQ(h, "::1");
  EXPECT_EQ(p, 0);
  EXPECT_FALSE(ParseListenAddress(":9101", &h, &p).ok());  // the host must be written out
  EXPECT_FALSE(ParseListenAddress("9101", &h, &p).ok());
  EXPECT_FALSE(ParseListenAddress("127.0.0.1:99999", &h, &p).ok());
  EXPECT_FALSE(ParseListenAddress("::1:9101", &h, &p).ok());  // IPv6 needs brackets
}

// ---- Listener.

// Connects to 127.0.0.1:port; -1 on failure.
int Connect(int port) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<uint16_t>(port));
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
    close(fd);
    return -1;
  }
  return fd;
}

// Sends raw bytes and reads the answer to EOF (bounded by timeout_ms).
std::string Exchange(int port, const std::string& raw, int timeout_ms = 5000) {
  int fd = Connect(port);
  if (fd < 0) return "connect failed";
  send(fd, raw.data(), raw.size(), MSG_NOSIGNAL);
  std::string out;
  const auto deadline = Clock::now() + std::chrono::milliseconds(timeout_ms);
  char buf[4096];
  for (;;) {
    const int left = static_cast<int>(std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count());
    pollfd p{fd, POLLIN, 0};
    if (left <= 0 || poll(&p, 1, left) <= 0) break;
    ssize_t n = recv(fd, buf, sizeof buf, 0);
    if (n <= 0) break;
    out.append(buf, static_cast<size_t>(n));
  }
  close(fd);
  return out;
}

class MetricsServerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    registry_.Value(Metric::kCacheMissBytes)->Set(12345);
    auto srv = MetricsServer::Start("127.0.0.1:0", [this](const std::string& path, std::string* type, std::string* body) {
      if (path != "/metrics") return false;
      *type = "text/plain; version=0.0.4";
      *body = registry_.RenderPrometheus();
      return true;
    }, /*io_timeout_ms=*/300);
    ASSERT_TRUE(srv.ok()) << srv.status().ToString();
    server_ = std::move(srv).value();
    ASSERT_GT(server_->port(), 0);
    EXPECT_TRUE(server_->loopback());
    EXPECT_EQ(server_->address(), "127.0.0.1:" + std::to_string(server_->port()));
  }
  MetricsRegistry registry_;
  std::unique_ptr<MetricsServer> server_;
};

TEST_F(MetricsServerTest, GetMetricsReturnsTheText) {
  testing::LocalHttpResponse resp;
  ASSERT_TRUE(testing::LocalHttp(server_->port(), "GET", "/metrics", "", &resp));
  EXPECT_EQ(resp.status, 200);
  EXPECT_EQ(resp.body, registry_.RenderPrometheus());
  EXPECT_NE(resp.body.find("modelfs_cache_miss_bytes_total 12345\n"), std::string::npos);
  EXPECT_NE(resp.headers.find("Content-Length: " + std::to_string(resp.body.size())), std::string::npos)
      << resp.headers;
  // A query string is ignored; HEAD has the headers only.
  ASSERT_TRUE(testing::LocalHttp(server_->port(), "GET", "/metrics?x=1", "", &resp));
  EXPECT_EQ(resp.status, 200);
  std::string head = Exchange(server_->port(), "HEAD /metrics HTTP/1.0\r\n\r\n");
  EXPECT_EQ(head.rfind("HTTP/1.0 200 OK\r\n", 0), 0u) << head;
  EXPECT_EQ(head.find("modelfs_cache_miss_bytes_total"), std::string::npos);
}

TEST_F(MetricsServerTest, OtherPathsAndBadRequests) {
  testing::LocalHttpResponse resp;
  ASSERT_TRUE(testing::LocalHttp(server_->port(), "GET", "/", "", &resp));
  EXPECT_EQ(resp.status, 404);
  ASSERT_TRUE(testing::LocalHttp(server_->port(), "GET", "/metricsx", "", &resp));
  EXPECT_EQ(resp.status, 404);
  ASSERT_TRUE(testing::LocalHttp(server_->port(), "POST", "/metrics", "x", &resp));
  EXPECT_EQ(resp.status, 405);
  EXPECT_EQ(Exchange(server_->port(), "garbage\r\n\r\n").rfind("HTTP/1.0 400 ", 0), 0u);
  EXPECT_EQ(Exchange(server_->port(), "GET /metrics\r\n\r\n").rfind("HTTP/1.0 400 ", 0), 0u);
  EXPECT_EQ(Exchange(server_->port(), "GET metrics HTTP/1.0\r\n\r\n").rfind("HTTP/1.0 400 ", 0), 0u);
  // A request head past the limit is refused, not buffered without bound.
  std::string huge = "GET /metrics HTTP/1.0\r\nX: " + std::string(MetricsServer::kMaxRequestBytes, 'a');
  EXPECT_EQ(Exchange(server_->port(), huge).rfind("HTTP/1.0 400 ", 0), 0u);
  // And after all that it still serves.
  ASSERT_TRUE(testing::LocalHttp(server_->port(), "GET", "/metrics", "", &resp));
  EXPECT_EQ(resp.status, 200);
}

TEST_F(MetricsServerTest, SilentClientIsDroppedAndOthersServed) {
  // One client connects and sends nothing (or half a request); the server drops it after its
  // 300 ms timeout and answers the next client.
  int silent = Connect(server_->port());
  ASSERT_GE(silent, 0);
  int half = Connect(server_->port());
  ASSERT_GE(half, 0);
  send(half, "GET /metr", 9, MSG_NOSIGNAL);
  const auto t0 = Clock::now();
  testing::LocalHttpResponse resp;
  ASSERT_TRUE(testing::LocalHttp(server_->port(), "GET", "/metrics", "", &resp, 5000));
  EXPECT_EQ(resp.status, 200);
  EXPECT_LT(Clock::now() - t0, std::chrono::seconds(3));
  // The silent one sees EOF (no answer); the half one a 408.
  char buf[256];
  pollfd p{silent, POLLIN, 0};
  ASSERT_EQ(poll(&p, 1, 3000), 1);
  EXPECT_EQ(recv(silent, buf, sizeof buf, 0), 0);
  close(silent);
  std::string got;
  for (ssize_t n; poll(&(p = pollfd{half, POLLIN, 0}), 1, 3000) == 1 && (n = recv(half, buf, sizeof buf, 0)) > 0;)
    got.append(buf, static_cast<size_t>(n));
  close(half);
  EXPECT_EQ(got.rfind("HTTP/1.0 408 ", 0), 0u) << got;
}

TEST(MetricsServerStartTest, RefusesBadAddressesAndTakenPorts) {
  auto h = [](const std::string&, std::string*, std::string*) { return false; };
  EXPECT_FALSE(MetricsServer::Start(":0", h).ok());
  EXPECT_FALSE(MetricsServer::Start("256.1.1.1:0", h).ok());
  auto first = MetricsServer::Start("127.0.0.1:0", h);
  ASSERT_TRUE(first.ok());
  auto second = MetricsServer::Start("127.0.0.1:" + std::to_string((*first)->port()), h);
  EXPECT_FALSE(second.ok());
  // Any address, explicitly written, is accepted; non-loopback is flagged (and logged).
  auto any = MetricsServer::Start("0.0.0.0:0", h);
  ASSERT_TRUE(any.ok()) << any.status().ToString();
  EXPECT_FALSE((*any)->loopback());
}

// ---- Monitor (no engine: the status and metrics files, the listener's /status).

TEST(MonitorTest, WritesStatusAndMetricsFilesAtomicallyAndServesStatus) {
  testing::TempDir dir("modelfs-monitor");
  MetricsRegistry registry;
  MonitorOptions o;
  o.listen = "127.0.0.1:0";
  o.metrics_file = dir.Sub("modelfs.prom");
  o.status_dir = dir.Sub("run");
  // A status file left by a daemon that died (a pid that no longer exists) is cleaned up.
  mkdir(o.status_dir.c_str(), 0700);
  pid_t dead = fork();
  if (dead == 0) _exit(0);
  waitpid(dead, nullptr, 0);
  const std::string stale = o.status_dir + "/" + StatusFileName(dead);
  testing::WriteFileOrDie(stale, "{}");
  const std::string status_file = o.status_dir + "/" + StatusFileName(getpid());
  o.mountpoint = "/mnt/x";
  o.interval_ms = 50;
  o.max_bandwidth_Bps = 1;  // enabled: its gauge must appear
  auto m = Monitor::Start(o, &registry, nullptr, nullptr);
  ASSERT_TRUE(m.ok()) << m.status().ToString();
  EXPECT_EQ((*m)->status_file(), status_file);
  struct stat st;
  EXPECT_NE(stat(stale.c_str(), &st), 0) << "stale status file kept";
  ASSERT_EQ(stat(status_file.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  nlohmann::json j = nlohmann::json::parse(testing::ReadFileOrDie(status_file));
  EXPECT_EQ(j["pid"], getpid());
  EXPECT_EQ(j["mountpoint"], "/mnt/x");
  EXPECT_EQ(j["metrics_listen"], (*m)->server()->address());
  EXPECT_TRUE(j["transfers"].is_array());
  ASSERT_EQ(j["alerts"].size(), 2u);
  // The file is rewritten each interval (50 ms): watched until it is, not for a fixed time that a
  // loaded machine may not give the monitor's thread.
  const double first = j["updated_unix"];
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  do {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
    j = nlohmann::json::parse(testing::ReadFileOrDie(status_file));
  } while (j["updated_unix"].get<double>() <= first && std::chrono::steady_clock::now() < deadline);
  EXPECT_GT(j["updated_unix"].get<double>(), first);
  const std::string prom = testing::ReadFileOrDie(o.metrics_file);
  EXPECT_NE(prom.find("modelfs_alert_active{alert=\"high_bandwidth\"} 0\n"), std::string::npos) << prom;
  EXPECT_NE(prom.find("# TYPE modelfs_window_success_ratio gauge\n"), std::string::npos);
  testing::LocalHttpResponse resp;
  ASSERT_TRUE(testing::LocalHttp((*m)->server()->port(), "GET", "/status", "", &resp));
  EXPECT_EQ(resp.status, 200);
  EXPECT_EQ(nlohmann::json::parse(resp.body)["pid"], getpid());
  // No temporary files are left beside them.
  int entries = 0;
  for (const char* d : {"", "/run"}) {
    std::string out;
    FILE* p = popen(("ls -A " + dir.path() + d).c_str(), "r");
    char buf[256];
    while (fgets(buf, sizeof buf, p)) {
      out += buf;
      entries++;
    }
    pclose(p);
    EXPECT_EQ(out.find(".tmp"), std::string::npos) << out;
  }
  EXPECT_EQ(entries, 3);  // modelfs.prom, run, run/status-<pid>.json
  m->reset();
  // Stopping removes the status file: it must never claim a mount that is gone.
  EXPECT_NE(stat(status_file.c_str(), &st), 0);
}

// `modelfs status` shows a mount whose status file is fresh and whose pid lives, and only those.
TEST(MonitorTest, StatusCommandShowsOnlyLiveMounts) {
  testing::TempDir cache("modelfs-monitor-status");
  MetricsRegistry registry;
  MonitorOptions o;
  o.status_dir = cache.Sub("run");
  o.mountpoint = "/mnt/live";
  o.interval_ms = 100;
  auto m = Monitor::Start(o, &registry, nullptr, nullptr);
  ASSERT_TRUE(m.ok()) << m.status().ToString();
  // Beside it: a file of a live pid (pid 1) that stopped updating a minute ago, and a torn one.
  nlohmann::json old = nlohmann::json::parse((*m)->StatusJson());
  old["pid"] = 1;
  old["updated_unix"] = old["updated_unix"].get<double>() - 60;
  testing::WriteFileOrDie(o.status_dir + "/" + StatusFileName(1), old.dump());
  testing::WriteFileOrDie(o.status_dir + "/" + StatusFileName(2), "{\"pid\": 2, \"upd");
  std::string out, err;
  ASSERT_EQ(StatusCommand({"--cache-dir", cache.path(), "--format", "json"}, &out, &err), 0) << err;
  nlohmann::json j = nlohmann::json::parse(out);
  ASSERT_EQ(j["mounts"].size(), 1u) << out;
  EXPECT_EQ(j["mounts"][0]["pid"], getpid());
  EXPECT_EQ(j["mounts"][0]["mountpoint"], "/mnt/live");
  out.clear();
  ASSERT_EQ(StatusCommand({"--cache-dir", cache.path()}, &out, &err), 0) << err;
  EXPECT_NE(out.find("mount running (pid " + std::to_string(getpid()) + ") at /mnt/live"), std::string::npos) << out;
  EXPECT_NE(out.find("no transfers in the last 10 s"), std::string::npos) << out;
  m->reset();
  out.clear();
  ASSERT_EQ(StatusCommand({"--cache-dir", cache.path(), "--format", "json"}, &out, &err), 0) << err;
  EXPECT_TRUE(nlohmann::json::parse(out)["mounts"].empty()) << out;
}

// The FUSE error counts the adapter records (modelfs_fuse_errors_total) reach the status JSON and
// the text of `modelfs status`, by op and errno.
TEST(MonitorTest, StatusListsFuseErrorReplies) {
  testing::TempDir cache("modelfs-monitor-errors");
  MetricsRegistry registry;
  MonitorOptions o;
  o.status_dir = cache.Sub("run");
  o.interval_ms = 100000;  // only the samples this test takes
  auto m = Monitor::Start(o, &registry, nullptr, nullptr);
  ASSERT_TRUE(m.ok()) << m.status().ToString();
  EXPECT_TRUE(nlohmann::json::parse((*m)->StatusJson())["fuse_errors"].empty());
  registry.Value(Metric::kFuseErrors, {"read", "EIO"})->Add(3);
  registry.Value(Metric::kFuseErrors, {"lookup", "ENOENT"})->Add(12);
  (*m)->SampleNow();
  const nlohmann::json errors = nlohmann::json::parse((*m)->StatusJson())["fuse_errors"];
  ASSERT_EQ(errors.size(), 2u) << errors.dump();
  EXPECT_EQ(errors[0], nlohmann::json({{"op", "lookup"}, {"errno", "ENOENT"}, {"count", 12}}));
  EXPECT_EQ(errors[1], nlohmann::json({{"op", "read"}, {"errno", "EIO"}, {"count", 3}}));
  std::string out, err;
  ASSERT_EQ(StatusCommand({"--cache-dir", cache.path()}, &out, &err), 0) << err;
  EXPECT_NE(out.find("error replies (op errno x count): lookup ENOENT x12, read EIO x3\n"), std::string::npos) << out;
}

TEST(MonitorTest, PortInUseFailsStart) {
  MetricsRegistry registry;
  auto h = [](const std::string&, std::string*, std::string*) { return false; };
  auto taken = MetricsServer::Start("127.0.0.1:0", h);
  ASSERT_TRUE(taken.ok());
  MonitorOptions o;
  o.listen = "127.0.0.1:" + std::to_string((*taken)->port());
  EXPECT_FALSE(Monitor::Start(o, &registry, nullptr, nullptr).ok());
}

}  // namespace
}  // namespace modelfs::cli
