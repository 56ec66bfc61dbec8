// Monitor: the mount daemon's watcher. One background thread that, every interval (1 s):
//  - samples the stats the layers already keep (DiskBlobStore::Stats, MirrorSet::Stats and
//    Transfers) into the metrics registry (common/metrics.h);
//  - keeps a window (--alert-window, 60 s) of cumulative counters, from which it computes the
//    download success rate and average speed, and raises or clears two alerts: low_success_rate
//    (below --alert-min-success-rate) and high_bandwidth (above --alert-max-bandwidth). A change is
//    one warning log line and the gauge modelfs_alert_active{alert=...};
//  - writes the metrics, atomically (tmp + rename), to --metrics-file for node_exporter's textfile
//    collector, and a status JSON (live transfers, rates, alerts) to
//    <cache-dir>/run/status-<pid>.json (0600, atomic) that `modelfs status` reads. One file per
//    daemon: two mounts sharing a cache directory each show their own transfers;
// and, with --metrics-listen ADDR:PORT, a second thread serving GET /metrics (Prometheus text) and
// GET /status (the same JSON) over plain HTTP/1.0 (MetricsServer).
//
// Listening is opt-in and the address is always the user's explicit choice; a non-loopback
// address is accepted (a Prometheus on another host needs it) but logged as a warning, since the
// metrics name the mirrors and the files being read. There is no authentication: keep it on
// loopback, or behind a firewall.
//
// The window and alert logic (RateWindow, AlertSet) and the listener are separate classes with no
// clock or thread of their own, so tests drive them with injected samples and a loopback socket.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "common/metrics.h"
#include "common/status.h"

namespace modelfs {
class DiskBlobStore;
class MirrorSet;
}  // namespace modelfs

namespace modelfs::cli {

// The status file's largest size, bytes: a status with every transfer listed (64) and a few
// mirrors is about 20 KiB; a larger one drops its transfers (and indentation).
constexpr uint64_t kStatusFileMax = 64ull << 10;
// Disk the status directory can take (it lives in the cache directory, so the quota keeps room
// for it): the directory's page, the file, and its temporary copy during WriteFileAtomic's rename.
constexpr uint64_t kStatusDiskBound = 4096 + 2 * kStatusFileMax;

struct MonitorOptions {
  std::string listen;        // "ADDR:PORT" for GET /metrics and /status; "" = no listener
  std::string metrics_file;  // Prometheus text written here each interval; "" = none
  // Directory for the status JSON, status-<pid>.json (the pid of the serving daemon, known only
  // after the fork), e.g. <cache-dir>/run; "" = none.
  std::string status_dir;
  std::string mountpoint;    // shown in the status
  int64_t window_s = 60;                // alert window, seconds
  double min_success_percent = 90;      // low_success_rate below this; 0 = off
  uint64_t max_bandwidth_Bps = 0;       // high_bandwidth above this, bytes/s; 0 = off
  int interval_ms = 1000;               // sampling period
};

// ---- Window and alerts (pure logic).

// Cumulative counters at one moment.
struct WindowSample {
  double t_s = 0;       // seconds on any monotonic clock
  uint64_t ok = 0;      // calls that succeeded
  uint64_t failed = 0;  // calls that failed plus retried attempts
  uint64_t bytes = 0;   // bytes received
};

struct WindowRates {
  double span_s = 0;         // time covered by the samples (<= window)
  uint64_t attempts = 0;     // ok + failed in the window
  double success_ratio = 1;  // ok / attempts; 1 when there were none
  // Bytes received in the window divided by the window's full length (time before the first
  // sample counts as idle), so a short burst after startup never reads as a sustained rate.
  double speed_Bps = 0;
};

// The last window_s seconds of samples. Not thread-safe (the monitor thread owns it).
class RateWindow {
 public:
  explicit RateWindow(double window_s) : window_s_(window_s) {}
  // Samples must come in time order; counters may only grow (a smaller value restarts the window).
  void Add(const WindowSample& s);
  WindowRates Rates() const;

 private:
  double window_s_;
  std::deque<WindowSample> samples_;
};

struct AlertState {
  std::string name;     // "low_success_rate" | "high_bandwidth"
  bool enabled = false;
  bool active = false;
  double since_s = 0;   // when it last changed (the sample clock)
  std::string message;  // why it is active (or last was)
};

// Evaluates the two alerts on each window. Not thread-safe.
class AlertSet {
 public:
  // Fewer calls than this in the window never raise low_success_rate: two failures out of three
  // calls on an idle mount are not an outage worth a page.
  static constexpr uint64_t kMinAttempts = 10;
  AlertSet(double min_success_percent, uint64_t max_bandwidth_Bps, uint64_t min_attempts = kMinAttempts);
  // Updates the states; returns the ones that changed (to be logged).
  std::vector<AlertState> Evaluate(const WindowRates& r, double now_s);
  const std::vector<AlertState>& states() const { return states_; }

 private:
  double min_ratio_;
  uint64_t max_Bps_;
  uint64_t min_attempts_;
  std::vector<AlertState> states_;  // [0] low_success_rate, [1] high_bandwidth
};

// ---- Listener.

// Parses "HOST:PORT" (IPv6 as "[::1]:PORT"; PORT 0 = any free port). HOST must be written out.
Status ParseListenAddress(const std::string& text, std::string* host, int* port);

// A tiny HTTP/1.0 server on one thread: accepts one connection at a time, reads the request head
// (at most kMaxRequestBytes, within io_timeout_ms, else it drops the client), answers GET/HEAD
// through the handler and closes. 400 for a malformed request, 405 for other methods, 404 when the
// handler declines the path. Serial by design: a scrape takes microseconds, and a client that
// stalls holds the others back by at most io_timeout_ms.
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

// ---- The monitor.

class Monitor {
 public:
  // Starts the listener (if opts.listen; an error here is returned, so a mount fails loudly
  // rather than silently without its metrics) and the sampling thread. `mirrors` is null for an
  // offline mount; `store` may be null in tests. All must outlive the Monitor.
  static Result<std::unique_ptr<Monitor>> Start(const MonitorOptions& opts, MetricsRegistry* metrics,
                                                const MirrorSet* mirrors, const DiskBlobStore* store);
  ~Monitor();  // stops the thread, then the listener; removes the status file
  Monitor(const Monitor&) = delete;
  Monitor& operator=(const Monitor&) = delete;

  // One sampling round (what the thread does each interval); exposed for tests.
  void SampleNow();
  // The latest status JSON (as written to the status file).
  std::string StatusJson() const;
  const MetricsServer* server() const { return server_.get(); }
  const std::string& status_file() const { return status_file_; }

 private:
  Monitor(const MonitorOptions& opts, MetricsRegistry* metrics, const MirrorSet* mirrors,
          const DiskBlobStore* store);
  void Loop();

  const MonitorOptions opts_;
  MetricsRegistry* const metrics_;
  const MirrorSet* const mirrors_;
  const DiskBlobStore* const store_;
  std::unique_ptr<MetricsServer> server_;
  std::string status_file_;  // status_dir/status-<pid>.json, or ""
  // Guarded by sample_mu_ (one SampleNow at a time: the thread's, or a test's): the window, the
  // alerts, the previous sample for the 1 s speed, the write-failure flags.
  std::mutex sample_mu_;
  RateWindow window_;
  AlertSet alerts_;
  double last_t_ = -1;
  uint64_t last_bytes_ = 0;
  bool status_file_failing_ = false, metrics_file_failing_ = false;
  mutable std::mutex status_mu_;  // guards status_json_ (read by the listener thread)
  std::string status_json_;
  std::mutex stop_mu_;  // guards stop_ (with stop_cv_)
  std::condition_variable stop_cv_;
  bool stop_ = false;
  std::thread thread_;
};

// The status file a daemon with this pid writes in status_dir, and the pid a status file name
// belongs to (0 if it is not one).
std::string StatusFileName(int pid);
int StatusFilePid(const std::string& name);

}  // namespace modelfs::cli
