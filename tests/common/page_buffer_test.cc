// PageBufferPool: reuse, the bound on buffers kept (in use + free), and the cap on buffers in use.
#include "common/page_buffer.h"

#include <gtest/gtest.h>

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
  // Both buffers are out: the waiter must not pass. There is no event to wait for when it is
  // right, so it is given 50 ms to go wrong.
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
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
}  // namespace modelfs
