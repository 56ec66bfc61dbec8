// MetricsServer and ParseListenAddress: see metrics_server.h. The server's thread polls the
// listening socket and a wake pipe (the destructor writes to it); no locks.
#include "tools/metrics_server.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>

#include "common/log.h"

namespace modelfs::cli {
namespace {

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

}  // namespace modelfs::cli
