// The monitor's alert logic: a window of cumulative counters (RateWindow) and the two alerts
// judged on it (AlertSet). Pure logic: no clock (samples carry their time), no thread, no I/O, no
// lock; the monitor's thread owns one of each (tools/monitor.h), and tests drive them with
// injected samples (tests/tools/alerts_test.cc).
//
// Success rate = ok calls / (ok + failed calls + retried attempts) over the window, judged only
// with AlertSet::kMinAttempts calls in it; speed = bytes in the window / the window's full length.
#pragma once

#include <cstdint>
#include <deque>
#include <string>
#include <vector>

namespace modelfs::cli {

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

}  // namespace modelfs::cli
