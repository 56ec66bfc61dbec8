// The BlobStore contract (cache/blob_store.h), one typed suite run over every implementation: the
// in-memory store the fs/ tests use (tests/testing/memory_blob_store.h) and the disk store over a
// fake range source. What one store is held to, the other is too.
#include "cache/blob_store.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "cache/disk_blob_store.h"
#include "tests/testing/fake_range_source.h"
#include "tests/testing/memory_blob_store.h"
#include "tests/testing/temp_dir.h"

namespace modelfs {
namespace {

std::string Bytes(size_t n, uint32_t seed) {
  std::string s(n, '\0');
  uint32_t x = seed * 2654435761u + 1;
  for (auto& c : s) {
    x = x * 1103515245u + 12345u;
    c = static_cast<char>(x >> 16);
  }
  return s;
}

// Each environment makes a store and registers content with it (Add returns the BlobRef to read).
struct MemoryStoreEnv {
  testing::FakeRangeSource refs;  // only to make BlobRefs as the hub would name them
  testing::MemoryBlobStore store;
  BlobRef Add(const std::string& path, const std::string& content, bool lfs) {
    BlobRef r = refs.Add(path, content, lfs);
    store.Put(r.key, content);
    return r;
  }
  BlobStore& get() { return store; }
};

struct DiskStoreEnv {
  testing::TempDir dir;
  testing::FakeRangeSource source;
  std::unique_ptr<DiskBlobStore> store;
  DiskStoreEnv() {
    CacheOptions o;
    o.dir = dir.path();
    o.fetch_threads = 4;
    auto s = DiskBlobStore::Open(o, &source);
    EXPECT_TRUE(s.ok()) << s.status().ToString();
    if (s.ok()) store = std::move(s).value();
  }
  ~DiskStoreEnv() {
    if (store) store->WaitIdle(10000);  // before the source goes
    store.reset();
  }
  BlobRef Add(const std::string& path, const std::string& content, bool lfs) {
    return source.Add(path, content, lfs);
  }
  BlobStore& get() { return *store; }
};

template <typename Env>
class BlobStoreContractTest : public ::testing::Test {
 protected:
  std::string ReadAll(const BlobRef& ref, size_t step) {
    std::string out;
    std::vector<char> buf(step);
    for (uint64_t off = 0;; off += step) {
      size_t n = 0;
      Status s = env_.get().Read(ref, off, step, buf.data(), &n);
      EXPECT_TRUE(s.ok()) << s.ToString();
      if (!s.ok() || n == 0) break;
      out.append(buf.data(), n);
    }
    return out;
  }
  Env env_;
};

using Stores = ::testing::Types<MemoryStoreEnv, DiskStoreEnv>;
TYPED_TEST_SUITE(BlobStoreContractTest, Stores);

TYPED_TEST(BlobStoreContractTest, ReadsGiveTheBlobsBytesWhateverTheStep) {
  const std::string big = Bytes(9 * kChunkSize + 17, 1), small = Bytes(1000, 2);
  const BlobRef b = this->env_.Add("model.safetensors", big, true);
  const BlobRef s = this->env_.Add("config.json", small, false);
  EXPECT_EQ(this->ReadAll(b, kBlockSize), big);
  EXPECT_EQ(this->ReadAll(b, 128 * 1024 + 3), big);  // unaligned reads, again (now cached)
  EXPECT_EQ(this->ReadAll(s, 64), small);
}

TYPED_TEST(BlobStoreContractTest, AReadCrossingTheEndGivesWhatIsThereAndPastItNothing) {
  const std::string data = Bytes(kChunkSize + 100, 3);
  const BlobRef b = this->env_.Add("w.bin", data, true);
  std::vector<char> buf(4096);
  size_t n = 1;
  ASSERT_TRUE(this->env_.get().Read(b, data.size() - 10, buf.size(), buf.data(), &n).ok());
  EXPECT_EQ(std::string(buf.data(), n), data.substr(data.size() - 10));
  n = 1;
  ASSERT_TRUE(this->env_.get().Read(b, data.size(), buf.size(), buf.data(), &n).ok());
  EXPECT_EQ(n, 0u);
  n = 1;
  ASSERT_TRUE(this->env_.get().Read(b, data.size() + kChunkSize, buf.size(), buf.data(), &n).ok());
  EXPECT_EQ(n, 0u);
}

TYPED_TEST(BlobStoreContractTest, ReadOrSpanGivesWhatReadGives) {
  const std::string data = Bytes(3 * kChunkSize, 4);
  const BlobRef b = this->env_.Add("s.bin", data, true);
  ASSERT_EQ(this->ReadAll(b, kBlockSize), data);  // cached and checked, where the store caches
  for (uint64_t off : {uint64_t{0}, uint64_t{kBlockSize} + 5, 3 * kChunkSize - 100}) {
    std::vector<char> buf(kBlockSize);
    size_t n = 0;
    BlobStore::FileSpan span;
    ASSERT_TRUE(this->env_.get().ReadOrSpan(b, off, buf.size(), buf.data(), &n, &span).ok());
    std::string got;
    if (span.fd >= 0) {
      got.resize(span.len);
      ASSERT_EQ(pread(span.fd, got.data(), span.len, static_cast<off_t>(span.pos)), static_cast<ssize_t>(span.len));
    } else if (span.mem != nullptr) {
      got.assign(span.mem, span.len);
    } else {
      got.assign(buf.data(), n);
    }
    EXPECT_EQ(got, data.substr(off, kBlockSize)) << "at " << off;
  }
}

TYPED_TEST(BlobStoreContractTest, ConcurrentReadersOfOneBlobGetTheSameBytes) {
  const std::string data = Bytes(6 * kChunkSize + 1, 5);
  const BlobRef b = this->env_.Add("c.bin", data, true);
  std::vector<std::string> got(4);
  std::vector<std::thread> readers;
  for (size_t i = 0; i < got.size(); i++) {
    readers.emplace_back([&, i] { got[i] = this->ReadAll(b, kBlockSize / (i + 1)); });
  }
  for (auto& t : readers) t.join();
  for (const std::string& g : got) EXPECT_EQ(g, data);
}

TYPED_TEST(BlobStoreContractTest, OpensNestAndAnIntactFileCompletesWithoutAHashFailure) {
  const std::string data = Bytes(2 * kChunkSize + 3, 6);
  const BlobRef b = this->env_.Add("o.bin", data, true);
  BlobStore& store = this->env_.get();
  store.OpenBlob(b);
  store.OpenBlob(b);
  EXPECT_EQ(this->ReadAll(b, kBlockSize), data);
  EXPECT_TRUE(store.CompleteForReader(b).ok());
  EXPECT_EQ(store.HashFailures(b), 0u);
  store.CloseBlob(b);
  store.CloseBlob(b);
  EXPECT_EQ(this->ReadAll(b, kBlockSize), data);  // still readable once closed
}

}  // namespace
}  // namespace modelfs
