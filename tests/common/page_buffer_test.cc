// PageBufferPool: reuse, the bound on buffers kept (in use + free), and the cap on buffers in use.
#include "common/page_buffer.h"

#include <gtest/gtest.h>
#include <sys/mman.h>

#include <atomic>
#include <chrono>
#include <thread>
#include <vector>

namespace modelfs {
namespace {

constexpr size_t kBytes = 64 << 10;

TEST(PageBufferPoolTest, ABufferGivenBackIsHandedOutAgain) {
  PageBufferPool pool(kBytes, 4);
  PageBuffer a = pool.Get();
  char* const p = a.get();
  p[0] = 'x';
  pool.Put(std::move(a));
  PageBuffer b = pool.Get();
  EXPECT_EQ(b.get(), p);
  EXPECT_EQ(b[0], 'x');  // not zeroed again
}

// Eight users at once, keep = 4: when they finish, the pool holds at most 4 buffers, not 4 free
// on top of the 8 that were in use.
TEST(PageBufferPoolTest, KeepsAtMostKeepBuffersCountingThoseInUse) {
  PageBufferPool pool(kBytes, 4);
  std::vector<PageBuffer> out;
  for (int i = 0; i < 8; ++i) out.push_back(pool.Get());
  std::vector<char*> last_four;
  for (int i = 0; i < 8; ++i) {
    if (i >= 4) last_four.push_back(out[i].get());
    pool.Put(std::move(out[i]));  // 0..3 come back while 4 or more are still out: not kept
  }
  // Kept: the buffers given back once fewer than 4 were out, 4..7.
  std::vector<PageBuffer> again;
  for (int i = 0; i < 8; ++i) again.push_back(pool.Get());
  int reused = 0;
  for (const auto& b : again)
    for (char* p : last_four) reused += b.get() == p;
  EXPECT_EQ(reused, 4);
}

// max_out = 2: a third Get waits until a buffer comes back.
TEST(PageBufferPoolTest, GetWaitsAtMaxOutUntilABufferComesBack) {
  PageBufferPool pool(kBytes, 2, 2);
  PageBuffer a = pool.Get(), b = pool.Get();
  std::atomic<bool> got{false};
  std::thread t([&] {
    PageBuffer c = pool.Get();
    got = true;
    pool.Put(std::move(c));
  });
  // Both buffers are out: the waiter must wait. Once it is seen waiting (a bounded poll: a Get
  // that did not wait never shows there, and the deadline fails the test), only a Put lets it on.
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (pool.waiting() == 0 && !got.load() && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::yield();
  }
  EXPECT_EQ(pool.waiting(), 1u);
  EXPECT_FALSE(got.load());
  pool.Put(std::move(a));
  t.join();
  EXPECT_TRUE(got.load());
  pool.Put(std::move(b));
}

// A buffer larger than the pool's size is the caller's own and never counts against max_out.
TEST(PageBufferPoolTest, OversizedBuffersAreNotPooledOrCounted) {
  PageBufferPool pool(kBytes, 1, 1);
  PageBuffer a = pool.Get();
  PageBuffer big = pool.Get(2 * kBytes);  // would wait forever if counted
  ASSERT_NE(big.get(), nullptr);
  pool.Put(std::move(big));
  pool.Put(std::move(a));
  PageBuffer b = pool.Get();
  EXPECT_NE(b.get(), nullptr);
}

}  // namespace
// Two pools under one bound of 6 MiB (a 4 MiB and a 1 MiB pool): a buffer given back is kept
// while both together hold at most 6 MiB, in use and free; past it, it is unmapped.
bool Mapped(const char* p) { return msync(const_cast<char*>(p), 4096, MS_ASYNC) == 0; }

TEST(PageBufferPoolTest, PoolsSharingABoundKeepWithinItTogether) {
  auto keep = std::make_shared<PageBufferKeep>(6u << 20);
  PageBufferPool big(4u << 20, keep), small(1u << 20, keep);
  PageBuffer a = big.Get();
  PageBuffer b1 = small.Get(), b2 = small.Get(), b3 = small.Get();  // 7 MiB held
  char* const pa = a.get();
  char* const p1 = b1.get();
  small.Put(std::move(b1));  // 7 > 6: unmapped, 6 held
  EXPECT_FALSE(Mapped(p1));
  big.Put(std::move(a));  // 6: kept
  EXPECT_TRUE(Mapped(pa));
  PageBuffer a2 = big.Get();
  EXPECT_EQ(a2.get(), pa);
  big.Put(std::move(a2));
  char* const p2 = b2.get();
  small.Put(std::move(b2));  // 6: kept
  EXPECT_TRUE(Mapped(p2));
  PageBuffer c = small.Get();
  EXPECT_EQ(c.get(), p2);
  PageBuffer d = small.Get();  // fresh: 7 MiB held
  char* const pd = d.get();
  small.Put(std::move(d));  // unmapped
  EXPECT_FALSE(Mapped(pd));
  small.Put(std::move(c));
  small.Put(std::move(b3));
}

}  // namespace modelfs
