// LineRateLimiter: at most N lines per one-second window, the refused lines counted and reported
// with the next line written, windows restarting after a quiet second, concurrent callers.
#include "common/rate_limiter.h"

#include <gtest/gtest.h>

#include <atomic>
#include <thread>
#include <vector>

namespace modelfs {
namespace {

TEST(LineRateLimiterTest, AtMostNPerSecondThenReportsTheSuppressedCount) {
  LineRateLimiter lim(3);
  for (int i = 0; i < 3; ++i) {
    auto d = lim.Admit(10.0 + i * 0.1);
    EXPECT_TRUE(d.write) << i;
    EXPECT_EQ(d.suppressed, 0u);
  }
  for (int i = 0; i < 5; ++i) EXPECT_FALSE(lim.Admit(10.5 + i * 0.05).write) << i;
  EXPECT_EQ(lim.total_suppressed(), 5u);
  // Still inside the window that began at 10.0.
  EXPECT_FALSE(lim.Admit(10.99).write);
  // A new window: the first line carries the 6 left out.
  auto d = lim.Admit(11.0);
  EXPECT_TRUE(d.write);
  EXPECT_EQ(d.suppressed, 6u);
  // The count was handed over once.
  d = lim.Admit(11.1);
  EXPECT_TRUE(d.write);
  EXPECT_EQ(d.suppressed, 0u);
  EXPECT_EQ(lim.total_suppressed(), 6u);
}

TEST(LineRateLimiterTest, WindowStartsAtTheFirstLineAfterAQuietPeriod) {
  LineRateLimiter lim(1);
  EXPECT_TRUE(lim.Admit(0.0).write);
  EXPECT_FALSE(lim.Admit(0.9).write);
  // 100 s of silence, then a burst: one line passes at once, not a backlog.
  EXPECT_TRUE(lim.Admit(100.5).write);
  EXPECT_FALSE(lim.Admit(101.4).write);
  EXPECT_TRUE(lim.Admit(101.5).write);
}

TEST(LineRateLimiterTest, ClockGoingBackwardsStaysInTheWindow) {
  LineRateLimiter lim(1);
  EXPECT_TRUE(lim.Admit(5.0).write);
  EXPECT_FALSE(lim.Admit(4.0).write);
  EXPECT_EQ(lim.total_suppressed(), 1u);
}

TEST(LineRateLimiterTest, ZeroSuppressesEverything) {
  LineRateLimiter lim(0);
  for (int i = 0; i < 4; ++i) EXPECT_FALSE(lim.Admit(i).write);
  EXPECT_EQ(lim.total_suppressed(), 4u);
}

TEST(LineRateLimiterTest, ConcurrentCallersNeverExceedTheLimit) {
  LineRateLimiter lim(10);
  std::atomic<int> written{0};
  std::atomic<uint64_t> reported{0};
  std::vector<std::thread> ts;
  for (int t = 0; t < 8; ++t) {
    ts.emplace_back([&] {
      for (int i = 0; i < 1000; ++i) {
        auto d = lim.Admit(42.0);  // one window for everyone
        if (d.write) written++;
        reported += d.suppressed;
      }
    });
  }
  for (auto& t : ts) t.join();
  EXPECT_EQ(written.load(), 10);
  EXPECT_EQ(lim.total_suppressed(), 8000u - 10u);
  EXPECT_EQ(reported.load(), 0u);  // nothing passed after the first refusal in this window
  auto d = lim.Admit(43.0);
  EXPECT_TRUE(d.write);
  EXPECT_EQ(d.suppressed, 7990u);
}

}  // namespace
}  // namespace modelfs
