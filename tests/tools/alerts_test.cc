// tools/alerts.h: the rate window and the alerts, driven by injected samples (no clock, no thread).
#include "tools/alerts.h"

#include <gtest/gtest.h>

namespace modelfs::cli {
namespace {

// ---- RateWindow.

TEST(RateWindowTest, RatesOverTheWindowOnly) {
  RateWindow w(10);
  EXPECT_EQ(w.Rates().attempts, 0u);
  EXPECT_EQ(w.Rates().success_ratio, 1.0);
  // t = 0..20 s, one sample a second: 10 ok calls/s, 1 failure/s from t = 11 on, 1 MB/s.
  for (int t = 0; t <= 20; ++t) {
    const uint64_t failed = t > 10 ? static_cast<uint64_t>(t - 10) : 0;
    w.Add({static_cast<double>(t), 10ull * t, failed, 1000000ull * t});
  }
  WindowRates r = w.Rates();
  EXPECT_DOUBLE_EQ(r.span_s, 10);         // samples t = 10..20
  EXPECT_EQ(r.attempts, 100u + 10u);      // 100 ok + 10 failed, none from before t = 10
  EXPECT_NEAR(r.success_ratio, 100.0 / 110, 1e-9);
  EXPECT_DOUBLE_EQ(r.speed_Bps, 1e6);
}

TEST(RateWindowTest, StartupBurstIsAveragedOverTheWholeWindow) {
  RateWindow w(60);
  w.Add({0, 0, 0, 0});
  w.Add({1, 0, 0, 60000000});  // 60 MB in the first second
  EXPECT_DOUBLE_EQ(w.Rates().speed_Bps, 1e6);  // 60 MB / 60 s, not 60 MB/s
}

TEST(RateWindowTest, CounterResetRestartsTheWindow) {
  RateWindow w(10);
  w.Add({0, 100, 0, 5000});
  w.Add({1, 5, 0, 10});  // smaller: a restarted source, not a negative rate
  EXPECT_EQ(w.Rates().attempts, 0u);
  w.Add({2, 15, 0, 20});
  EXPECT_EQ(w.Rates().attempts, 10u);
}

// ---- AlertSet.

WindowRates Rates(uint64_t attempts, double ratio, double Bps) {
  WindowRates r;
  r.span_s = 60;
  r.attempts = attempts;
  r.success_ratio = ratio;
  r.speed_Bps = Bps;
  return r;
}

TEST(AlertSetTest, LowSuccessRateRaisesOnceAndClearsOnce) {
  AlertSet a(90, 0);
  EXPECT_TRUE(a.states()[0].enabled);
  EXPECT_FALSE(a.states()[1].enabled);  // bandwidth alert off (0)
  EXPECT_TRUE(a.Evaluate(Rates(100, 0.95, 0), 1).empty());
  auto ch = a.Evaluate(Rates(100, 0.80, 0), 2);
  ASSERT_EQ(ch.size(), 1u);
  EXPECT_EQ(ch[0].name, "low_success_rate");
  EXPECT_TRUE(ch[0].active);
  EXPECT_NE(ch[0].message.find("80.0%"), std::string::npos) << ch[0].message;
  EXPECT_TRUE(a.Evaluate(Rates(100, 0.70, 0), 3).empty());  // still active: no new line
  EXPECT_TRUE(a.states()[0].active);
  ch = a.Evaluate(Rates(100, 0.99, 0), 4);
  ASSERT_EQ(ch.size(), 1u);
  EXPECT_FALSE(ch[0].active);
  EXPECT_FALSE(a.states()[0].active);
  EXPECT_EQ(a.states()[0].since_s, 4);
}

TEST(AlertSetTest, TooFewCallsNeverRaiseLowSuccessRate) {
  AlertSet a(90, 0);
  EXPECT_TRUE(a.Evaluate(Rates(AlertSet::kMinAttempts - 1, 0.0, 0), 1).empty());
  EXPECT_EQ(a.Evaluate(Rates(AlertSet::kMinAttempts, 0.0, 0), 2).size(), 1u);
}

TEST(AlertSetTest, HighBandwidthThreshold) {
  AlertSet a(0, 100000000);  // success-rate alert off, 100 MB/s
  EXPECT_FALSE(a.states()[0].enabled);
  EXPECT_TRUE(a.Evaluate(Rates(1000, 0.0, 99e6), 1).empty());  // off: a 0% success rate is ignored
  auto ch = a.Evaluate(Rates(0, 1, 150e6), 2);
  ASSERT_EQ(ch.size(), 1u);
  EXPECT_EQ(ch[0].name, "high_bandwidth");
  EXPECT_TRUE(ch[0].active);
  ch = a.Evaluate(Rates(0, 1, 50e6), 3);
  ASSERT_EQ(ch.size(), 1u);
  EXPECT_FALSE(ch[0].active);
}

}  // namespace
}  // namespace modelfs::cli
