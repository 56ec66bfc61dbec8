// MetricsServer: the --metrics-listen responder. A tiny HTTP/1.0 server on one thread of its own:
// it accepts one connection at a time, reads the request head (at most kMaxRequestBytes, within
// io_timeout_ms, else it drops the client), answers GET/HEAD through a handler and closes. 400
// for a malformed request, 405 for other methods, 404 when the handler declines the path. Serial
// by design: a scrape takes microseconds, and a client that stalls holds the others back by at
// most io_timeout_ms. It knows nothing of metrics: the monitor's handler (tools/monitor.cc)
// answers /metrics and /status.
//
// Listening is opt-in and the address is always the user's explicit choice; a non-loopback
// address is accepted (a Prometheus on another host needs it) but logged as a warning, since the
// metrics name the mirrors and the files being read. There is no authentication: keep it on
// loopback, or behind a firewall.
//
// Locks: none. The handler is called on the server's thread, one request at a time; whatever it
// reads must be guarded by its owner (the monitor's status_mu_, the registry's own locks).
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <thread>

#include "common/status.h"

namespace modelfs::cli {

// Parses "HOST:PORT" (IPv6 as "[::1]:PORT"; PORT 0 = any free port). HOST must be written out.
Status ParseListenAddress(const std::string& text, std::string* host, int* port);

class MetricsServer {
 public:
  // Fills *content_type and *body for a path (query string removed); false = 404.
  using Handler = std::function<bool(const std::string& path, std::string* content_type, std::string* body)>;
  static constexpr size_t kMaxRequestBytes = 8192;

  // Binds and starts serving. `addr` as ParseListenAddress; a non-loopback one is logged as a
  // warning. Errors (bad address, port taken) are returned, not logged.
  static Result<std::unique_ptr<MetricsServer>> Start(const std::string& addr, Handler handler,
                                                      int io_timeout_ms = 2000);
  ~MetricsServer();  // stops the thread and closes the socket
  MetricsServer(const MetricsServer&) = delete;
  MetricsServer& operator=(const MetricsServer&) = delete;

  int port() const { return port_; }
  const std::string& address() const { return address_; }  // "127.0.0.1:43123" as bound
  bool loopback() const { return loopback_; }

 private:
  MetricsServer() = default;
  void Loop();
  void Serve(int fd);

  Handler handler_;
  int io_timeout_ms_ = 2000;
  int listen_fd_ = -1;
  int wake_[2] = {-1, -1};  // a byte on wake_[1] ends Loop
  int port_ = 0;
  bool loopback_ = true;
  std::string address_;
  std::thread thread_;
};

}  // namespace modelfs::cli
