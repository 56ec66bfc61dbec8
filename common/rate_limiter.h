// LineRateLimiter: decides whether one more log line of a kind may be written now. At most
// `per_second` lines pass in each one-second window (windows start at the first line after the
// previous window ended); the lines refused meanwhile are counted, and the next line that passes
// carries that count so the log says how much it left out ("... (41 more suppressed)").
//
// A pure decision with no clock of its own: the caller passes the time (seconds on any monotonic
// clock), so a unit test drives it without sleeping. Thread-safe: one mutex around a few integer
// updates (used on error paths only, never on a hot path).
#pragma once

#include <cstdint>
#include <mutex>

namespace modelfs {

class LineRateLimiter {
 public:
  // per_second 0 suppresses every line (and counts it).
  explicit LineRateLimiter(uint32_t per_second) : per_second_(per_second) {}
  LineRateLimiter(const LineRateLimiter&) = delete;
  LineRateLimiter& operator=(const LineRateLimiter&) = delete;

  struct Decision {
    bool write = false;       // log this line
    uint64_t suppressed = 0;  // when write: lines refused since the last line that was written
  };
  // One line wants out at now_s. Times that go backwards are treated as the current window.
  Decision Admit(double now_s);
  // Lines refused so far, in total (tests, status).
  uint64_t total_suppressed() const;

 private:
  const uint32_t per_second_;
  mutable std::mutex mu_;  // guards the fields below
  double window_start_s_ = 0;
  bool started_ = false;
  uint32_t in_window_ = 0;       // lines written in the current window
  uint64_t pending_ = 0;         // refused since the last written line
  uint64_t total_suppressed_ = 0;
};

}  // namespace modelfs
