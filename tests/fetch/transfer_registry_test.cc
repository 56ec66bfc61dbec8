// TransferRegistry alone: what a read in flight and a finished one show, the speed over active
// time, the linger, the bound on entries and the order of the list. Time is a SteppedClock the
// test moves; nothing sleeps and no socket is opened. (MirrorSet's use of it, over a real fake
// hub, is MirrorTest.TransfersShowReadsInFlightAndFinishedBytes.)
#include "fetch/transfer_registry.h"

#include <gtest/gtest.h>

#include <chrono>
#include <string>
#include <thread>
#include <vector>

#include "tests/testing/stepped_clock.h"

namespace modelfs {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;
constexpr uint64_t kMiB = 1u << 20;

// "f12": appended, not "f" + std::to_string(12) (GCC 12's -Wrestrict false positive at -O3).
std::string Name(const char* prefix, size_t i) {
  std::string s = prefix;
  s += std::to_string(i);
  return s;
}

class TransferRegistryTest : public ::testing::Test {
 protected:
  testing::SteppedClock clock_;
  TransferRegistry reg_{clock_.Fn()};
};

TEST_F(TransferRegistryTest, EmptyAtFirst) { EXPECT_TRUE(reg_.Snapshot().empty()); }

TEST_F(TransferRegistryTest, ReadInFlightThenDone) {
  reg_.Begin("org/a@c:f", 4 * kMiB);
  reg_.SetMirror("org/a@c:f", "m1:80");
  std::vector<TransferInfo> v = reg_.Snapshot();
  ASSERT_EQ(v.size(), 1u);
  EXPECT_EQ(v[0].file, "org/a@c:f");
  EXPECT_EQ(v[0].mirror, "m1:80");
  EXPECT_EQ(v[0].reads_in_flight, 1u);
  EXPECT_EQ(v[0].bytes_in_flight, 4 * kMiB);
  EXPECT_EQ(v[0].bytes_done, 0u);
  EXPECT_EQ(v[0].idle_s, 0);
  reg_.End("org/a@c:f", 4 * kMiB, true);
  v = reg_.Snapshot();
  ASSERT_EQ(v.size(), 1u);
  EXPECT_EQ(v[0].reads_in_flight, 0u);
  EXPECT_EQ(v[0].bytes_in_flight, 0u);
  EXPECT_EQ(v[0].bytes_done, 4 * kMiB);
  EXPECT_EQ(v[0].failed_reads, 0u);
}

TEST_F(TransferRegistryTest, FailedReadCountsNoBytes) {
  reg_.Begin("f", kMiB);
  reg_.Begin("f", kMiB);
  reg_.End("f", kMiB, false);
  std::vector<TransferInfo> v = reg_.Snapshot();
  ASSERT_EQ(v.size(), 1u);
  EXPECT_EQ(v[0].failed_reads, 1u);
  EXPECT_EQ(v[0].bytes_done, 0u);
  EXPECT_EQ(v[0].reads_in_flight, 1u);
  EXPECT_EQ(v[0].bytes_in_flight, kMiB);
}

// The latest mirror a read went to is shown (a failover moves it).
TEST_F(TransferRegistryTest, LatestMirrorIsShown) {
  reg_.Begin("f", kMiB);
  reg_.SetMirror("f", "a:1");
  reg_.SetMirror("f", "b:2");
  EXPECT_EQ(reg_.Snapshot()[0].mirror, "b:2");
  reg_.SetMirror("unknown", "c:3");  // no entry: nothing is created
  EXPECT_EQ(reg_.Snapshot().size(), 1u);
  reg_.End("unknown", kMiB, true);  // likewise
  EXPECT_EQ(reg_.Snapshot()[0].bytes_done, 0u);
}

// Speed is bytes done over active time (first start to the last end, or to now while reads run):
// idle time after the last read does not dilute it.
TEST_F(TransferRegistryTest, SpeedOverActiveTimeOnly) {
  reg_.Begin("f", 4 * kMiB);
  clock_.Advance(seconds(2));
  reg_.End("f", 4 * kMiB, true);
  clock_.Advance(seconds(5));
  std::vector<TransferInfo> v = reg_.Snapshot();
  ASSERT_EQ(v.size(), 1u);
  // SteppedClock also runs with real time: allow the few milliseconds the test itself takes.
  EXPECT_NEAR(v[0].elapsed_s, 7, 0.5);
  EXPECT_NEAR(v[0].idle_s, 5, 0.5);
  EXPECT_NEAR(v[0].speed_Bps, 2.0 * kMiB, 0.1 * kMiB);
}

// A finished entry lingers kLingerS, then leaves the list; a read after that starts a new entry
// (bytes and elapsed time from zero), while a read within it continues the old one.
TEST_F(TransferRegistryTest, LingerThenForgotten) {
  const auto linger = milliseconds(static_cast<int64_t>(TransferRegistry::kLingerS * 1000));
  reg_.Begin("f", kMiB);
  reg_.End("f", kMiB, true);
  clock_.Advance(linger - seconds(1));
  ASSERT_EQ(reg_.Snapshot().size(), 1u);
  reg_.Begin("f", kMiB);  // within the linger: the same transfer
  reg_.End("f", kMiB, true);
  EXPECT_EQ(reg_.Snapshot()[0].bytes_done, 2 * kMiB);
  clock_.Advance(linger + seconds(1));
  EXPECT_TRUE(reg_.Snapshot().empty());
  reg_.Begin("f", kMiB);  // past it: a new transfer
  std::vector<TransferInfo> v = reg_.Snapshot();
  ASSERT_EQ(v.size(), 1u);
  EXPECT_EQ(v[0].bytes_done, 0u);
  EXPECT_LT(v[0].elapsed_s, 1);
  reg_.End("f", kMiB, true);
}

// A read in flight never lingers out, however long it runs.
TEST_F(TransferRegistryTest, InFlightReadsNeverExpire) {
  reg_.Begin("f", kMiB);
  clock_.Advance(seconds(1000));
  std::vector<TransferInfo> v = reg_.Snapshot();
  ASSERT_EQ(v.size(), 1u);
  EXPECT_EQ(v[0].idle_s, 0);
  reg_.End("f", kMiB, true);
}

// Files with reads running come first, then finished ones, the most recently ended first.
TEST_F(TransferRegistryTest, MostRecentlyActiveFirst) {
  for (const char* f : {"old", "newer", "running"}) {
    reg_.Begin(f, kMiB);
    clock_.Advance(seconds(1));
  }
  reg_.End("old", kMiB, true);
  clock_.Advance(seconds(1));
  reg_.End("newer", kMiB, true);
  std::vector<TransferInfo> v = reg_.Snapshot();
  ASSERT_EQ(v.size(), 3u);
  EXPECT_EQ(v[0].file, "running");
  EXPECT_EQ(v[1].file, "newer");
  EXPECT_EQ(v[2].file, "old");
  reg_.End("running", kMiB, true);
}

// Past kMaxEntries, the finished entry that ended first is dropped for a new file; entries with
// reads in flight are never dropped, even if the list then holds more.
TEST_F(TransferRegistryTest, BoundDropsTheOldestFinishedEntryOnly) {
  const size_t n = TransferRegistry::kMaxEntries;
  for (size_t i = 0; i < n; ++i) {
    reg_.Begin(Name("f", i), kMiB);
    clock_.Advance(milliseconds(10));
    reg_.End(Name("f", i), kMiB, true);
  }
  ASSERT_EQ(reg_.Snapshot().size(), n);
  reg_.Begin("new", kMiB);
  std::vector<TransferInfo> v = reg_.Snapshot();
  ASSERT_EQ(v.size(), n);
  for (const TransferInfo& t : v) EXPECT_NE(t.file, "f0");  // ended first: dropped
  reg_.End("new", kMiB, true);

  TransferRegistry busy(clock_.Fn());
  for (size_t i = 0; i < n; ++i) busy.Begin(Name("g", i), kMiB);
  busy.Begin("one more", kMiB);
  EXPECT_EQ(busy.Snapshot().size(), n + 1);
  for (size_t i = 0; i < n; ++i) busy.End(Name("g", i), kMiB, true);
  busy.End("one more", kMiB, true);
}

// Reads begin and end on many threads (as the fetch pools do): the counts add up.
TEST_F(TransferRegistryTest, ConcurrentReadsAddUp) {
  constexpr int kThreads = 8, kReads = 500;
  std::vector<std::thread> ts;
  for (int t = 0; t < kThreads; ++t)
    ts.emplace_back([&, t] {
      const std::string file = t % 2 ? "odd" : "even";
      for (int i = 0; i < kReads; ++i) {
        reg_.Begin(file, 100);
        reg_.SetMirror(file, Name("m", t));
        (void)reg_.Snapshot();
        reg_.End(file, 100, i % 10 != 0);
      }
    });
  for (auto& t : ts) t.join();
  std::vector<TransferInfo> v = reg_.Snapshot();
  ASSERT_EQ(v.size(), 2u);
  for (const TransferInfo& t : v) {
    EXPECT_EQ(t.reads_in_flight, 0u);
    EXPECT_EQ(t.bytes_in_flight, 0u);
    EXPECT_EQ(t.bytes_done, 100u * (kThreads / 2) * kReads * 9 / 10);
    EXPECT_EQ(t.failed_reads, static_cast<uint64_t>(kThreads / 2) * kReads / 10);
  }
}

}  // namespace
}  // namespace modelfs
