// Monitor: the mount daemon's watcher, the coordinator of the monitor's rooms. One background
// thread that, every interval (1 s):
//  - samples the stats the layers already keep (DiskBlobStore::Stats, MirrorSet::Stats and
//    Transfers) into the metrics registry (tools/stats_sampler.h);
//  - adds the counters to a window (--alert-window, 60 s), from which it computes the download
//    success rate and average speed, and raises or clears two alerts: low_success_rate (below
//    --alert-min-success-rate) and high_bandwidth (above --alert-max-bandwidth) (tools/alerts.h).
//    A change is one warning log line and the gauge modelfs_alert_active{alert=...};
//  - writes the metrics, atomically (tmp + rename), to --metrics-file for node_exporter's textfile
//    collector, and a status JSON (live transfers, rates, alerts) to
//    <cache-dir>/run/status-<pid>.json (0600, atomic) that `modelfs status` reads
//    (tools/status_file.h). One file per daemon: two mounts sharing a cache directory each show
//    their own transfers;
// and, with --metrics-listen ADDR:PORT, a second thread serving GET /metrics (Prometheus text) and
// GET /status (the same JSON) over plain HTTP/1.0 (tools/metrics_server.h).
//
// Locks: sample_mu_ serializes SampleNow (the thread's and a test's) and guards what a sample
// updates; status_mu_ guards the latest status JSON, which the listener's thread reads; stop_mu_
// guards stop_. Taken in that order (sample_mu_, then status_mu_ briefly); stop_mu_ is never held
// while sampling.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>

#include "common/metrics.h"
#include "common/status.h"
#include "tools/alerts.h"
#include "tools/metrics_server.h"
#include "tools/status_file.h"

namespace modelfs {
class DiskBlobStore;
class MirrorSet;
}  // namespace modelfs

namespace modelfs::cli {

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

  bool operator==(const MonitorOptions&) const = default;
};

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
  // The listener's answer for a path: /metrics and /status; false for any other (404).
  bool Serve(const std::string& path, std::string* type, std::string* body) const;

  const MonitorOptions opts_;
  MetricsRegistry* const metrics_;
  const MirrorSet* const mirrors_;
  const DiskBlobStore* const store_;
  std::unique_ptr<MetricsServer> server_;
  std::string status_file_;  // status_dir/status-<pid>.json, or ""
  // Guarded by sample_mu_ (one SampleNow at a time: the thread's, or a test's): the window, the
  // alerts, the previous sample for the 1 s speed, the files and their write-failure flags.
  std::mutex sample_mu_;
  RateWindow window_;
  AlertSet alerts_;
  double last_t_ = -1;
  uint64_t last_bytes_ = 0;
  std::optional<RewrittenFile> status_out_, metrics_out_;
  mutable std::mutex status_mu_;  // guards status_json_ (read by the listener thread)
  std::string status_json_;
  std::mutex stop_mu_;  // guards stop_ (with stop_cv_)
  std::condition_variable stop_cv_;
  bool stop_ = false;
  std::thread thread_;
};

}  // namespace modelfs::cli
