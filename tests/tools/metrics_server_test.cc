// tools/metrics_server.h: the listen address and the HTTP/1.0 responder over a real loopback
// socket (200 for /metrics, HEAD, 404, 400, 405, an oversized head, a silent client, taken ports).
#include "tools/metrics_server.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <chrono>

#include "common/metrics.h"
#include "tests/testing/fake_hub_process.h"

namespace modelfs::cli {
namespace {

using Clock = std::chrono::steady_clock;

// ---- Listen address.

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

}  // namespace
}  // namespace modelfs::cli
