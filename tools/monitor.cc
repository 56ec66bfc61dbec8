// Monitor: see monitor.h. Start prepares the status directory and the listener, Loop calls
// SampleNow each interval, and SampleNow puts the rooms together: the stats sampled
// (stats_sampler.h), the 1 s speed, the window and the alerts (alerts.h), the status JSON and the
// two files (status_file.h).
#include "tools/monitor.h"

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <nlohmann/json.hpp>

#include "cache/disk_blob_store.h"
#include "common/file_util.h"
#include "common/log.h"
#include "fetch/mirror_set.h"
#include "tools/stats_sampler.h"

namespace modelfs::cli {
namespace {

double SteadySeconds() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

double WallSeconds() {
  return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
}

}  // namespace

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
    RemoveDeadStatusFiles(opts.status_dir);
    m->status_file_ = opts.status_dir + "/" + StatusFileName(getpid());
    m->status_out_.emplace(m->status_file_, 0600);
  }
  // 0644: node_exporter usually runs as another user; the metrics hold no secret.
  if (!opts.metrics_file.empty()) m->metrics_out_.emplace(opts.metrics_file, 0644);
  // The first sample sets the baseline and writes the files before anyone asks for them.
  m->SampleNow();
  if (!opts.listen.empty()) {
    const Monitor* raw = m.get();
    auto srv = MetricsServer::Start(opts.listen, [raw](const std::string& path, std::string* type, std::string* body) {
      return raw->Serve(path, type, body);
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

bool Monitor::Serve(const std::string& path, std::string* type, std::string* body) const {
  if (path == "/metrics") {
    // Prometheus text format 0.0.4 (what every scraper reads).
    *type = "text/plain; version=0.0.4; charset=utf-8";
    *body = metrics_->RenderPrometheus();
    return true;
  }
  if (path == "/status") {
    *type = "application/json";
    *body = StatusJson();
    return true;
  }
  return false;
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
  if (store_) j["cache"] = SampleCache(store_->Stats(), &r);

  MirrorsSample ms;
  if (mirrors_) ms = SampleMirrors(mirrors_->Stats(), mirrors_->Transfers(), &r);
  r.Value(Metric::kReadsInFlight)->Set(ms.reads_in_flight);
  r.Value(Metric::kBytesInFlight)->Set(ms.bytes_in_flight);
  WindowSample ws;
  ws.t_s = now;
  ws.ok = ms.ok;
  ws.failed = ms.failed;
  ws.bytes = ms.bytes;
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
  j["fuse_errors"] = FuseErrorsJson(r);
  j["speed_Bps"] = speed;
  j["window"] = {{"window_s", opts_.window_s}, {"span_s", rates.span_s}, {"attempts", rates.attempts},
                 {"success_ratio", rates.success_ratio}, {"speed_Bps", rates.speed_Bps}};
  j["alerts"] = alerts;
  j["mirrors"] = std::move(ms.mirrors);
  j["reads_in_flight"] = ms.reads_in_flight;
  j["transfers"] = std::move(ms.transfers);
  const std::string text = StatusText(std::move(j));
  {
    std::lock_guard<std::mutex> lock(status_mu_);
    status_json_ = text;
  }
  if (status_out_) status_out_->Write(text);
  if (metrics_out_) metrics_out_->Write(r.RenderPrometheus());
}

}  // namespace modelfs::cli
