#include "cache/offline.h"

#include <gtest/gtest.h>

#include <chrono>

#include "cache/disk_blob_store.h"
#include "cache/meta_store.h"
#include "tests/testing/fake_range_source.h"
#include "tests/testing/temp_dir.h"

namespace modelfs {
namespace {

TEST(OfflineTest, WrappersFailFastWithUnavailable) {
  OfflineHubApi hub;
  OfflineRangeSource src;
  RepoId repo{"model", "org", "name"};
  EXPECT_EQ(hub.ResolveRevision(repo, "main").status().code(), Code::kUnavailable);
  EXPECT_EQ(hub.ListTree(repo, std::string(40, 'a')).status().code(), Code::kUnavailable);
  BlobRef ref;
  ref.repo = repo;
  ref.path = "config.json";
  ref.size = 10;
  char buf[10] = {'q'};
  std::string by = "untouched";
  EXPECT_EQ(src.ReadAt(ref, 0, 10, buf, &by).code(), Code::kUnavailable);
  EXPECT_EQ(buf[0], 'q');
  EXPECT_EQ(by, "untouched");
}

// With the offline source behind it, the store serves what it cached and fails an uncached read
// at once, with no retries or timeouts in between.
TEST(OfflineTest, StoreServesCachedBytesAndFailsUncachedQuickly) {
  testing::TempDir dir;
  testing::FakeRangeSource online;
  std::string data = testing::RandomBytes(12 * kBlockSize + 3, 7);
  BlobRef ref = online.Add("model.safetensors", data);
  CacheOptions o;
  o.dir = dir.path();
  o.fetch_threads = 2;
  {
    auto store = DiskBlobStore::Open(o, &online).value();
    std::vector<char> buf(kChunkSize);
    size_t n = 0;
    ASSERT_TRUE(store->Read(ref, 0, kChunkSize, buf.data(), &n).ok());  // first chunk only
    ASSERT_TRUE(store->WaitIdle(10000));
  }
  OfflineRangeSource offline;
  auto store = DiskBlobStore::Open(o, &offline).value();
  std::vector<char> buf(kBlockSize);
  size_t n = 0;
  ASSERT_TRUE(store->Read(ref, kBlockSize, kBlockSize, buf.data(), &n).ok());
  EXPECT_EQ(std::string(buf.data(), n), data.substr(kBlockSize, kBlockSize));
  auto t0 = std::chrono::steady_clock::now();
  Status s = store->Read(ref, 8 * kBlockSize, kBlockSize, buf.data(), &n);
  auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - t0);
  EXPECT_EQ(s.code(), Code::kUnavailable);
  EXPECT_LT(ms.count(), 1000);
}

}  // namespace
}  // namespace modelfs
