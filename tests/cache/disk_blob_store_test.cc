#include "cache/disk_blob_store.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <set>
#include <thread>

#include "tests/testing/fake_range_source.h"
#include "tests/testing/temp_dir.h"

namespace modelfs {
namespace {

using testing::FakeRangeSource;
using testing::RandomBytes;
using testing::TempDir;

class DiskBlobStoreTest : public ::testing::Test {
 protected:
  std::unique_ptr<DiskBlobStore> NewStore(uint64_t max_bytes = 0) {
    CacheOptions o;
    o.dir = dir_.path();
    o.max_bytes = max_bytes;
    o.fetch_threads = 4;
    auto s = DiskBlobStore::Open(o, &source_);
    EXPECT_TRUE(s.ok()) << s.status().ToString();
    return std::move(s).value();
  }
  std::string ReadAll(DiskBlobStore* store, const BlobRef& ref, size_t step = kBlockSize) {
    std::string out;
    std::vector<char> buf(step);
    for (uint64_t off = 0;; off += step) {
      size_t n = 0;
      Status s = store->Read(ref, off, step, buf.data(), &n);
      EXPECT_TRUE(s.ok()) << s.ToString();
      if (!s.ok() || n == 0) break;
      out.append(buf.data(), n);
    }
    return out;
  }
  TempDir dir_;
  FakeRangeSource source_;
};

TEST_F(DiskBlobStoreTest, ReadsAreByteExactAtAnyOffset) {
  std::string data = RandomBytes(10 * kBlockSize + 777, 1);
  BlobRef ref = source_.Add("model.safetensors", data);
  auto store = NewStore();
  EXPECT_EQ(ReadAll(store.get(), ref), data);
  // Odd offsets and lengths crossing block and chunk boundaries, and the tail.
  std::vector<std::pair<uint64_t, size_t>> cases = {
      {0, 1}, {kBlockSize - 3, 10}, {kChunkSize - 100, 200}, {123457, 3 * kBlockSize},
      {data.size() - 1, 1}, {data.size() - 10, 100}, {5, 0}};
  for (auto [off, len] : cases) {
    std::vector<char> buf(len + 1);
    size_t n = 99;
    ASSERT_TRUE(store->Read(ref, off, len, buf.data(), &n).ok());
    size_t want = std::min<uint64_t>(len, data.size() - off);
    ASSERT_EQ(n, want) << off;
    EXPECT_EQ(std::string(buf.data(), n), data.substr(off, want)) << off;
  }
  size_t n = 99;
  char c;
  ASSERT_TRUE(store->Read(ref, data.size(), 10, &c, &n).ok());
  EXPECT_EQ(n, 0u);
  ASSERT_TRUE(store->Read(ref, data.size() + 100, 10, &c, &n).ok());
  EXPECT_EQ(n, 0u);
}

TEST_F(DiskBlobStoreTest, ZeroLengthBlobVerifies) {
  BlobRef ref = source_.Add("empty.txt", "", false);
  auto store = NewStore();
  EXPECT_EQ(ReadAll(store.get(), ref), "");
  EXPECT_EQ(source_.request_count(), 0u);
}

TEST_F(DiskBlobStoreTest, SecondStoreServesFromDiskWithoutNetwork) {
  std::string data = RandomBytes(9 * kBlockSize + 5, 2);
  BlobRef ref = source_.Add("a.safetensors", data);
  {
    auto store = NewStore();
    EXPECT_EQ(ReadAll(store.get(), ref), data);
    ASSERT_TRUE(store->WaitIdle(10000));
    EXPECT_TRUE(store->IsVerified(ref.key));
  }
  source_.ClearRequests();
  source_.fail_next = 1000;  // the network is gone
  auto store = NewStore();
  EXPECT_EQ(ReadAll(store.get(), ref), data);
  EXPECT_EQ(source_.request_count(), 0u);
  EXPECT_EQ(store->Stats().hit_bytes, data.size());
}

TEST_F(DiskBlobStoreTest, CorruptCachedBlockIsRefetchedNotAnError) {
  std::string data = RandomBytes(6 * kBlockSize, 3);
  BlobRef ref = source_.Add("a.safetensors", data);
  {
    auto store = NewStore();
    EXPECT_EQ(ReadAll(store.get(), ref), data);
    ASSERT_TRUE(store->WaitIdle(10000));
  }
  // Damage block 5 on disk.
  std::string path = dir_.path() + "/blobs/" + ref.hash.substr(0, 2) + "/" + ref.key + ".data";
  int fd = open(path.c_str(), O_RDWR);
  ASSERT_GE(fd, 0);
  char junk[16] = {1, 2, 3};
  ASSERT_EQ(pwrite(fd, junk, sizeof junk, 5 * kBlockSize + 10), (ssize_t)sizeof junk);
  close(fd);
  source_.ClearRequests();
  auto store = NewStore();
  EXPECT_EQ(ReadAll(store.get(), ref), data);
  // Exactly the chunk holding block 5 was fetched again.
  auto reqs = source_.requests();
  ASSERT_EQ(reqs.size(), 1u);
  EXPECT_EQ(reqs[0].first, kChunkSize);
  EXPECT_EQ(store->Stats().corrupt_blocks, 1u);
}

TEST_F(DiskBlobStoreTest, WrongBytesFromMirrorFailVerificationAndAreDropped) {
  std::string data = RandomBytes(12 * kBlockSize, 4);  // three chunks: verified in background
  BlobRef ref = source_.Add("a.safetensors", data);
  auto store = NewStore();
  source_.corrupt_next = 1;
  std::string got = ReadAll(store.get(), ref);
  EXPECT_NE(got, data);  // per-block checks cannot know; the whole-file hash does
  ASSERT_TRUE(store->WaitIdle(10000));
  EXPECT_FALSE(store->IsVerified(ref.key));
  EXPECT_EQ(store->Stats().verify_failures, 1u);
  // The blocks were dropped (a read still running may have refetched some of them since).
  EXPECT_LT(store->Stats().used_bytes, data.size());
  // The mirror that lied is not trusted for this blob again in this run: its bytes are served
  // but not cached.
  uint64_t uncached = store->Stats().uncached_bytes;
  EXPECT_EQ(ReadAll(store.get(), ref), data);
  ASSERT_TRUE(store->WaitIdle(10000));
  EXPECT_FALSE(store->IsVerified(ref.key));
  EXPECT_GE(store->Stats().uncached_bytes, uncached + data.size());
  // A new run gives it another chance; honest bytes verify.
  store.reset();
  store = NewStore();
  EXPECT_EQ(ReadAll(store.get(), ref), data);
  ASSERT_TRUE(store->WaitIdle(10000));
  EXPECT_TRUE(store->IsVerified(ref.key));
}

TEST_F(DiskBlobStoreTest, SmallBlobIsVerifiedBeforeServing) {
  std::string data = RandomBytes(300000, 5);
  BlobRef ref = source_.Add("tokenizer.json", data, /*lfs=*/false);
  auto store = NewStore();
  source_.corrupt_next = 1;
  EXPECT_EQ(ReadAll(store.get(), ref, 4096), data);  // never saw the corrupt copy
  EXPECT_EQ(store->Stats().verify_failures, 1u);
  source_.corrupt_next = 100;
  BlobRef bad = source_.Add("other.json", RandomBytes(1000, 6), false);
  std::vector<char> buf(1000);
  size_t n = 0;
  Status s = store->Read(bad, 0, 1000, buf.data(), &n);
  EXPECT_EQ(s.code(), Code::kCorruption);
}

TEST_F(DiskBlobStoreTest, ConcurrentReadersOfOneChunkSendOneRequest) {
  std::string data = RandomBytes(4 * kBlockSize, 7);
  BlobRef ref = source_.Add("a.safetensors", data);
  auto store = NewStore();
  source_.delay_ms = 200;
  std::vector<std::thread> threads;
  std::atomic<int> good{0};
  for (int t = 0; t < 8; t++) {
    threads.emplace_back([&, t] {
      std::vector<char> buf(1000);
      size_t n = 0;
      uint64_t off = static_cast<uint64_t>(t) * 1000;
      if (store->Read(ref, off, 1000, buf.data(), &n).ok() && n == 1000 &&
          memcmp(buf.data(), data.data() + off, 1000) == 0)
        good++;
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(good, 8);
  EXPECT_EQ(source_.request_count(), 1u);
}

TEST_F(DiskBlobStoreTest, SequentialReaderPrefetchesAlignedChunksOnce) {
  std::string data = RandomBytes(64 * kBlockSize + 100, 8);
  BlobRef ref = source_.Add("a.safetensors", data);
  auto store = NewStore();
  EXPECT_EQ(ReadAll(store.get(), ref, 128 << 10), data);
  ASSERT_TRUE(store->WaitIdle(10000));
  auto reqs = source_.requests();
  std::set<uint64_t> starts;
  for (auto [off, len] : reqs) {
    EXPECT_EQ(off % kChunkSize, 0u) << "unaligned request at " << off;
    EXPECT_TRUE(len == kChunkSize || off + len == data.size()) << off << "+" << len;
    EXPECT_TRUE(starts.insert(off).second) << "chunk fetched twice: " << off;
  }
  EXPECT_EQ(starts.size(), (data.size() + kChunkSize - 1) / kChunkSize);
  // Prefetch ran ahead: most bytes were served from the disk, not waited for.
  EXPECT_GT(store->Stats().hit_bytes, data.size() / 2);
}

TEST_F(DiskBlobStoreTest, NetworkErrorIsReturnedNotHung) {
  BlobRef ref = source_.Add("a.safetensors", RandomBytes(2 * kBlockSize, 9));
  auto store = NewStore();
  source_.fail_next = 1;
  std::vector<char> buf(100);
  size_t n = 0;
  EXPECT_EQ(store->Read(ref, 0, 100, buf.data(), &n).code(), Code::kUnavailable);
  // The failure is not remembered: the next read fetches again.
  ASSERT_TRUE(store->Read(ref, 0, 100, buf.data(), &n).ok());
  EXPECT_EQ(n, 100u);
}

TEST_F(DiskBlobStoreTest, QuotaEvictsLeastRecentlyUsedAndStillServes) {
  std::string a = RandomBytes(6 * kBlockSize, 10), b = RandomBytes(6 * kBlockSize, 11);
  BlobRef ra = source_.Add("a.safetensors", a), rb = source_.Add("b.safetensors", b);
  auto store = NewStore(8 * kBlockSize);
  EXPECT_EQ(ReadAll(store.get(), ra), a);
  ASSERT_TRUE(store->WaitIdle(10000));
  EXPECT_EQ(ReadAll(store.get(), rb), b);
  ASSERT_TRUE(store->WaitIdle(10000));
  CacheStats st = store->Stats();
  EXPECT_LE(st.used_bytes, 8 * kBlockSize);
  EXPECT_GT(st.evicted_bytes, 0u);
  EXPECT_EQ(ReadAll(store.get(), ra), a);
}

}  // namespace
}  // namespace modelfs
