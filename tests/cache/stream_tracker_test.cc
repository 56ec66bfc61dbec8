#include "cache/stream_tracker.h"

#include <gtest/gtest.h>

namespace modelfs {
namespace {

constexpr uint64_t kMiB = 1ull << 20;
constexpr uint64_t kKiB = 1ull << 10;

// The store's numbers: 1 MiB blocks, 4 MiB chunks, an 8 MiB first window up to 32 MiB, 8 MiB of
// kernel readahead.
StreamTracker::Limits TestLimits() { return {kMiB, 4 * kMiB, 8 * kMiB, 32 * kMiB, 8 * kMiB}; }

// A safetensors layout: the header ends at 100 KiB, then tensors end at 10, 50 and 60 MiB.
StreamTracker WithTensors() {
  StreamTracker t(TestLimits());
  t.set_regions({100 * kKiB, 10 * kMiB, 50 * kMiB, 60 * kMiB});
  return t;
}

TEST(StreamTrackerTest, WindowDoublesWhenItsReaderWaitsUpToTheMax) {
  StreamTracker t(TestLimits());
  StreamTracker::Stream* s = t.Start(0, kMiB, 8 * kMiB, 1);
  EXPECT_FALSE(t.Grow(kMiB));  // a lone read is not a stream yet: its window stays
  EXPECT_EQ(s->window, 8 * kMiB);
  t.Continue(*s, kMiB, kMiB, 8 * kMiB, 2);
  EXPECT_EQ(s->hits, 1u);
  EXPECT_TRUE(t.Grow(2 * kMiB));
  EXPECT_EQ(s->window, 16 * kMiB);
  EXPECT_TRUE(t.Grow(2 * kMiB));
  EXPECT_TRUE(t.Grow(2 * kMiB));
  EXPECT_EQ(s->window, 32 * kMiB);  // max_window
  EXPECT_FALSE(t.Grow(100 * kMiB));  // no stream there
  EXPECT_EQ(s->window, 32 * kMiB);
  // A later start window (the latency measured since) never shrinks it.
  t.Continue(*s, 2 * kMiB, kMiB, 8 * kMiB, 3);
  EXPECT_EQ(s->window, 32 * kMiB);
}

TEST(StreamTrackerTest, SequentialPrefetchIsWholeChunksFromTheReadsBlock) {
  StreamTracker t(TestLimits());
  StreamTracker::Stream* s = t.Start(0, kMiB, 8 * kMiB, 1);
  t.Continue(*s, kMiB + 100, kMiB, 8 * kMiB, 2);
  StreamTracker::Range r = t.SequentialRange(*s, kMiB + 100, kMiB, 1000 * kMiB);
  EXPECT_EQ(r.from, kMiB);        // this read's own block on
  EXPECT_EQ(r.to, 12 * kMiB);     // 2 MiB + 100 + 8 MiB, up to a whole chunk
  s->prefetched_to = r.to;
  r = t.SequentialRange(*s, 2 * kMiB, kMiB, 1000 * kMiB);
  EXPECT_EQ(r.from, 12 * kMiB);   // what is scheduled is not asked again
  r = t.SequentialRange(*s, 2 * kMiB, kMiB, 5 * kMiB + 7);
  EXPECT_EQ(r.to, 5 * kMiB + 7);  // never past the file's end
}

TEST(StreamTrackerTest, PlaceOfAReadAmongTheRegions) {
  StreamTracker t = WithTensors();
  EXPECT_FALSE(t.PlaceOf(0, 8).in_tensor);  // the header
  StreamTracker::Place p = t.PlaceOf(200 * kKiB, kMiB);
  EXPECT_TRUE(p.in_tensor);
  EXPECT_TRUE(p.first_tensor);
  EXPECT_EQ(p.region_begin, 100 * kKiB);
  EXPECT_EQ(p.region_end, 10 * kMiB);
  p = t.PlaceOf(20 * kMiB, kMiB);
  EXPECT_TRUE(p.in_tensor);
  EXPECT_FALSE(p.first_tensor);
  EXPECT_EQ(p.region_end, 50 * kMiB);
  // The kernel reads whole pages: a read from the last page of a tensor past its end is a read of
  // the next one.
  p = t.PlaceOf(50 * kMiB - 100, 8 * kKiB);
  EXPECT_EQ(p.region_begin, 50 * kMiB);
  EXPECT_EQ(p.region_end, 60 * kMiB);
  EXPECT_FALSE(t.PlaceOf(61 * kMiB, kMiB).in_tensor);  // past the last tensor
  EXPECT_FALSE(StreamTracker(TestLimits()).PlaceOf(20 * kMiB, kMiB).in_tensor);  // no layout
}

TEST(StreamTrackerTest, AStreamThatBeganInATensorIsCappedAtItsEndUntilItLeavesIt) {
  StreamTracker t = WithTensors();
  const StreamTracker::Place p = t.PlaceOf(20 * kMiB, kMiB);
  StreamTracker::Stream* s = t.Start(20 * kMiB, kMiB, 32 * kMiB, 1);
  t.EnterRegion(*s, 20 * kMiB, kMiB, p, 1);
  EXPECT_EQ(t.TensorRangeEnd(20 * kMiB, p), 50 * kMiB);  // the tensor, at most a window past the read
  EXPECT_EQ(t.TensorRangeEnd(5 * kMiB, StreamTracker::Place{true, false, 0, 50 * kMiB}), 37 * kMiB);
  EXPECT_EQ(t.RegionCap(*s), 50 * kMiB);
  t.Continue(*s, 21 * kMiB, kMiB, 8 * kMiB, 2);
  EXPECT_EQ(t.SequentialRange(*s, 21 * kMiB, kMiB, 100 * kMiB).to, 50 * kMiB);  // not 56 MiB
  // Inside: up to the kernel's readahead past the end (2 x 8 MiB); beyond it, a sequential reader.
  t.Continue(*s, 65 * kMiB, kMiB, 8 * kMiB, 3);
  EXPECT_EQ(t.RegionCap(*s), 50 * kMiB);
  t.Continue(*s, 66 * kMiB, kMiB, 8 * kMiB, 4);
  EXPECT_EQ(t.RegionCap(*s), UINT64_MAX);
  // A whole-file stream (a loader from the first tensor) is never capped.
  StreamTracker::Stream* w = t.Start(200 * kKiB, kMiB, 8 * kMiB, 5);
  w->whole = true;
  EXPECT_EQ(t.RegionCap(*w), UINT64_MAX);
  // Past the header, the slack is what the kernel reads ahead of a reader of the header alone.
  EXPECT_EQ(t.RegionSlack(100 * kKiB), kMiB);
  EXPECT_EQ(t.RegionSlack(10 * kMiB), 16 * kMiB);
}

TEST(StreamTrackerTest, AJumpRestartsTheStreamInItsNewTensor) {
  StreamTracker t = WithTensors();
  EXPECT_TRUE(t.Jumped(nullptr, 0));  // no stream: always new
  StreamTracker::Stream* s = t.Start(0, kMiB, 8 * kMiB, 1);
  t.Continue(*s, 4 * kMiB, kMiB, 8 * kMiB, 2);
  t.Continue(*s, 5 * kMiB, kMiB, 8 * kMiB, 3);
  s->prefetched_to = 16 * kMiB;
  EXPECT_FALSE(t.Jumped(s, 6 * kMiB + 10));  // within a block of where it was
  EXPECT_FALSE(t.Jumped(s, 15 * kMiB));      // inside what it has scheduled
  ASSERT_TRUE(t.Jumped(s, 20 * kMiB));
  EXPECT_EQ(t.Find(20 * kMiB), s);  // still within the forward tolerance: the same stream...
  t.EnterRegion(*s, 20 * kMiB, kMiB, t.PlaceOf(20 * kMiB, kMiB), 4);
  EXPECT_EQ(s->hits, 0u);  // ...which starts over in the new tensor
  EXPECT_EQ(s->start, 20 * kMiB);
  EXPECT_EQ(s->next, 21 * kMiB);
  EXPECT_EQ(t.RegionCap(*s), 50 * kMiB);
  // The kernel's readahead past the end of that tensor is not a jump; a read further on is.
  s->next = 49 * kMiB;
  s->prefetched_to = 50 * kMiB;
  EXPECT_FALSE(t.Jumped(s, 55 * kMiB));
  EXPECT_TRUE(t.Jumped(s, 70 * kMiB));
}

TEST(StreamTrackerTest, TheLeastRecentlyUsedStreamIsReplaced) {
  StreamTracker t(TestLimits());
  for (uint64_t i = 0; i < StreamTracker::kMaxStreams; i++) t.Start(i * 100 * kMiB, kMiB, 8 * kMiB, 10 + i);
  t.Find(0)->last_use = 100;  // the first stream read again: the second is now the oldest
  t.Start(1000 * kMiB, kMiB, 8 * kMiB, 101);
  EXPECT_NE(t.Find(kMiB), nullptr);
  EXPECT_EQ(t.Find(101 * kMiB), nullptr);
  EXPECT_NE(t.Find(1001 * kMiB), nullptr);
  EXPECT_EQ(t.Find(50 * kMiB), nullptr);  // near no stream
}

TEST(StreamTrackerTest, ALookaheadSeedsAStreamAtTheStartUntilAReaderMovesIt) {
  StreamTracker t(TestLimits());
  bool created = false;
  StreamTracker::Stream* s = t.Seed(16 * kMiB, &created);
  ASSERT_NE(s, nullptr);
  EXPECT_TRUE(created);
  EXPECT_EQ(s->window, 16 * kMiB);
  EXPECT_EQ(t.WindowEnd(0, 14 * kMiB, 100 * kMiB), 16 * kMiB);
  s->prefetched_to = 16 * kMiB;
  EXPECT_EQ(t.Seed(32 * kMiB, &created), s);  // topped up by the caller, not made again
  EXPECT_FALSE(created);
  // Its reader comes: the stream carries the window on.
  ASSERT_EQ(t.Find(0), s);
  t.Continue(*s, 0, kMiB, 8 * kMiB, 1);
  EXPECT_EQ(s->window, 16 * kMiB);
  EXPECT_EQ(t.Seed(32 * kMiB, &created), nullptr);
  // Dropped blocks: everything is scheduled again from each stream's position.
  t.Rewind();
  EXPECT_EQ(s->prefetched_to, 0u);
}

}  // namespace
}  // namespace modelfs
