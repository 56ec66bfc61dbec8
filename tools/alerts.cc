// RateWindow and AlertSet: see alerts.h. No locks (their owner serializes calls).
#include "tools/alerts.h"

#include <algorithm>
#include <cstdio>

namespace modelfs::cli {
namespace {

std::string HumanRate(double Bps) {
  char buf[32];
  if (Bps >= 1048576) snprintf(buf, sizeof buf, "%.1f MiB/s", Bps / 1048576);
  else snprintf(buf, sizeof buf, "%.1f KiB/s", Bps / 1024);
  return buf;
}

}  // namespace

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

}  // namespace modelfs::cli
