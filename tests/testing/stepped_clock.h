// SteppedClock: a steady clock a test moves forward. It reads steady_clock::now() plus an offset
// the test adds to (Advance), so time still passes but a cool-down or an expiry is reached when
// the test says so, not after a sleep that a loaded machine may stretch. Fn() fits the injectable
// clocks of fetch/ (MirrorSet::CoolDownClock, HttpRangeSource::UrlClock). Thread-safe (the offset
// is atomic); the SteppedClock must outlive what holds its Fn().
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>

namespace modelfs::testing {

class SteppedClock {
 public:
  std::function<std::chrono::steady_clock::time_point()> Fn() {
    return [this] { return std::chrono::steady_clock::now() + std::chrono::milliseconds(offset_ms_.load()); };
  }
  void Advance(std::chrono::milliseconds d) { offset_ms_ += d.count(); }

 private:
  std::atomic<int64_t> offset_ms_{0};
};

}  // namespace modelfs::testing
