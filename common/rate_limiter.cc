#include "common/rate_limiter.h"

namespace modelfs {

LineRateLimiter::Decision LineRateLimiter::Admit(double now_s) {
  std::lock_guard<std::mutex> lock(mu_);
  if (!started_ || now_s >= window_start_s_ + 1.0) {
    started_ = true;
    window_start_s_ = now_s;
    in_window_ = 0;
  }
  Decision d;
  if (in_window_ < per_second_) {
    ++in_window_;
    d.write = true;
    d.suppressed = pending_;
    pending_ = 0;
  } else {
    ++pending_;
    ++total_suppressed_;
  }
  return d;
}

uint64_t LineRateLimiter::total_suppressed() const {
  std::lock_guard<std::mutex> lock(mu_);
  return total_suppressed_;
}

}  // namespace modelfs
