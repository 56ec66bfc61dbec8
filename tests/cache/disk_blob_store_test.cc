#include "cache/disk_blob_store.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <sys/stat.h>
#include <sys/statvfs.h>

#include <atomic>
#include <filesystem>
#include <set>
#include <thread>

#include "cache/pins.h"
#include "tests/testing/fake_range_source.h"
#include "tests/testing/temp_dir.h"

namespace modelfs {
namespace {

using testing::FakeRangeSource;
using testing::RandomBytes;
using testing::TempDir;

// A safetensors file: the named U8 tensors of the given lengths one after another, their data
// starting at 1 KiB (the header padded with spaces), random bytes.
std::string SafetensorsAt1KiB(const std::vector<std::pair<std::string, uint64_t>>& tensors, uint32_t seed) {
  std::string h = "{";
  uint64_t off = 0;
  for (const auto& [name, len] : tensors) {
    h += std::string(off ? "," : "") + "\"" + name + "\":{\"dtype\":\"U8\",\"shape\":[" + std::to_string(len) +
         "],\"data_offsets\":[" + std::to_string(off) + "," + std::to_string(off + len) + "]}";
    off += len;
  }
  h += "}";
  h.append(1024 - 8 - h.size(), ' ');
  std::string le(8, '\0');
  for (int i = 0; i < 8; i++) le[i] = static_cast<char>((h.size() >> (8 * i)) & 0xff);
  return le + h + RandomBytes(off, seed);
}

class DiskBlobStoreTest : public ::testing::Test {
 protected:
  std::unique_ptr<DiskBlobStore> NewStore(uint64_t max_bytes = 0, bool verify_before_read = false) {
    CacheOptions o;
    o.dir = dir_.path();
    o.max_bytes = max_bytes;
    o.verify_before_read = verify_before_read;
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
  // Reads the blob from its first byte to its end as `cat` does; *err receives the first error
  // (reading stops there).
  // Reads the file front to back as one open file handle of the mount does (ModelFs::Read): the
  // store gates the read that reaches the end on the hash, and the handle fails every read after
  // a hash failure of the file it was given bytes of. Together they make a whole-file reader get
  // an error, never a clean EOF, when the file it read fails its hash.
  std::string ReadUntilError(DiskBlobStore* store, const BlobRef& ref, Status* err) {
    std::string out;
    std::vector<char> buf(kBlockSize);
    *err = Status::Ok();
    const uint64_t failures0 = store->HashFailures(ref);
    for (uint64_t off = 0;; off += kBlockSize) {
      size_t n = 0;
      *err = store->Read(ref, off, kBlockSize, buf.data(), &n);
      if (err->ok() && store->HashFailures(ref) != failures0) *err = Status::Corruption("hash failed");
      if (!err->ok() || n == 0) break;
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
  store->OpenBlob(ref);  // as an open() of the mount does
  EXPECT_EQ(ReadAll(store.get(), ref), "");
  store->CloseBlob(ref);
  EXPECT_EQ(source_.request_count(), 0u);
  ASSERT_TRUE(store->WaitIdle(10000));
  EXPECT_TRUE(store->IsVerified(ref.key));  // no block to wait for: hashed at once
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
  // Exactly block 5 was fetched again (block 4, the rest of its chunk, is still on disk).
  auto reqs = source_.requests();
  ASSERT_EQ(reqs.size(), 1u);
  EXPECT_EQ(reqs[0].first, 5 * kBlockSize);
  EXPECT_EQ(reqs[0].second, kBlockSize);
  EXPECT_EQ(store->Stats().corrupt_blocks, 1u);
}

// ReadOrSpan hands out blocks as a range of the cache file (for splice) only once this run has
// checked them: written by it, or read back and matched against their XXH3; otherwise it copies,
// as Read. A block damaged on disk while no store was open is caught by its first read
// (refetched), never handed out unchecked.
std::string SpanBytes(const BlobStore::FileSpan& span) {
  std::string out(span.len, '\0');
  EXPECT_EQ(pread(span.fd, out.data(), out.size(), static_cast<off_t>(span.pos)), static_cast<ssize_t>(span.len));
  return out;
}

// One ReadOrSpan: the bytes, from the span (of the cache file or of memory) or the buffer;
// *spliced says whether from the file, *from_memory whether from a fetch buffer.
std::string ReadOrSpanBytes(DiskBlobStore* store, const BlobRef& ref, uint64_t off, size_t len, bool* spliced,
                            Status* st = nullptr, bool* from_memory = nullptr) {
  std::string buf(len, '\0');
  size_t n = 0;
  BlobStore::FileSpan span;
  Status s = store->ReadOrSpan(ref, off, len, buf.data(), &n, &span);
  if (st) *st = s;
  *spliced = span.fd >= 0;
  if (from_memory) *from_memory = span.mem != nullptr;
  if (!s.ok()) return "";
  if (*spliced) {
    EXPECT_EQ(n, span.len);
    return SpanBytes(span);
  }
  if (span.mem != nullptr) {
    EXPECT_EQ(n, span.len);
    return std::string(span.mem, span.len);
  }
  buf.resize(n);
  return buf;
}

// A cold read whose bytes all arrive in one fetch is answered from that fetch's buffer (no copy,
// no reply buffer), which the span keeps alive after the fetch ended and was stored; a read
// across two fetches is copied.
TEST_F(DiskBlobStoreTest, ColdReadsAreAnsweredFromTheirFetchBuffer) {
  const std::string data = RandomBytes(3 * kChunkSize, 47);
  const BlobRef ref = source_.Add("m.bin", data);
  auto store = NewStore();
  size_t n = 0;
  BlobStore::FileSpan span;
  std::string buf(kBlockSize, '\0');
  ASSERT_TRUE(store->ReadOrSpan(ref, kBlockSize + 10, kBlockSize, buf.data(), &n, &span).ok());
  ASSERT_NE(span.mem, nullptr);
  EXPECT_EQ(span.fd, -1);
  EXPECT_EQ(n, kBlockSize);
  ASSERT_TRUE(store->WaitIdle(10000));  // the fetch ended, its blocks are stored
  EXPECT_TRUE(std::string(span.mem, span.len) == data.substr(kBlockSize + 10, kBlockSize));
  span = BlobStore::FileSpan();
  // Across the end of a chunk, not fetched yet: two fetches, copied. On an empty cache: the
  // first read's prefetch window follows the measured latency, and a slow run's reached it.
  store.reset();
  std::filesystem::remove_all(dir_.path() + "/blobs");
  store = NewStore();
  bool spliced = true, from_memory = true;
  EXPECT_TRUE(ReadOrSpanBytes(store.get(), ref, 2 * kChunkSize - 100, 200, &spliced, nullptr, &from_memory) ==
              data.substr(2 * kChunkSize - 100, 200));
  EXPECT_FALSE(spliced);
  EXPECT_FALSE(from_memory);
}

TEST_F(DiskBlobStoreTest, SpansAreGivenOnlyForBlocksCheckedInThisRun) {
  std::string data = RandomBytes(6 * kBlockSize + 777, 31);
  BlobRef ref = source_.Add("a.safetensors", data);
  std::string path = dir_.path() + "/blobs/" + ref.hash.substr(0, 2) + "/" + ref.key + ".data";
  bool spliced = true;
  {
    auto store = NewStore();
    EXPECT_TRUE(ReadOrSpanBytes(store.get(), ref, 0, kBlockSize, &spliced) == data.substr(0, kBlockSize));
    EXPECT_FALSE(spliced);  // fetched: copied
    EXPECT_EQ(ReadAll(store.get(), ref), data);
    ASSERT_TRUE(store->WaitIdle(10000));
    ASSERT_TRUE(store->IsVerified(ref.key));
    // Written in this run: checked. A span across blocks and up to EOF is cut at EOF.
    EXPECT_TRUE(ReadOrSpanBytes(store.get(), ref, 5 * kBlockSize + 100, 2 * kBlockSize, &spliced) ==
                data.substr(5 * kBlockSize + 100));
    EXPECT_TRUE(spliced);
    EXPECT_EQ(store->Stats().spliced_bytes, kBlockSize + 677);
  }
  // Block 3 is damaged on disk while no store is open.
  int fd = open(path.c_str(), O_RDWR);
  ASSERT_GE(fd, 0);
  char junk[16] = {1, 2, 3};
  ASSERT_EQ(pwrite(fd, junk, sizeof junk, 3 * kBlockSize + 10), (ssize_t)sizeof junk);
  close(fd);
  auto store = NewStore();
  // A new run has checked nothing: the first read of a block copies (and checks) it. (Block 4:
  // the store reads block 0 itself, to learn a safetensors layout, and that checks it too.)
  EXPECT_TRUE(ReadOrSpanBytes(store.get(), ref, 4 * kBlockSize, kBlockSize, &spliced) ==
              data.substr(4 * kBlockSize, kBlockSize));
  EXPECT_FALSE(spliced);
  EXPECT_TRUE(ReadOrSpanBytes(store.get(), ref, 4 * kBlockSize, kBlockSize, &spliced) ==
              data.substr(4 * kBlockSize, kBlockSize));
  EXPECT_TRUE(spliced);
  EXPECT_TRUE(ReadOrSpanBytes(store.get(), ref, 3 * kBlockSize, kBlockSize, &spliced) ==
              data.substr(3 * kBlockSize, kBlockSize));  // caught, refetched
  EXPECT_FALSE(spliced);
  EXPECT_EQ(store->Stats().corrupt_blocks, 1u);
  EXPECT_EQ(ReadAll(store.get(), ref), data);
  ASSERT_TRUE(store->WaitIdle(10000));
  ASSERT_TRUE(store->IsVerified(ref.key));
  EXPECT_TRUE(ReadOrSpanBytes(store.get(), ref, 0, data.size(), &spliced) == data);
  EXPECT_TRUE(spliced);
  // The cache file cut short under the store (a disk fault): a span past its end would splice
  // short, taken for EOF, so the read is copied, which finds the blocks gone and fetches them.
  ASSERT_EQ(truncate(path.c_str(), 4 * kBlockSize), 0);
  EXPECT_TRUE(ReadOrSpanBytes(store.get(), ref, 0, kBlockSize, &spliced) == data.substr(0, kBlockSize));
  EXPECT_TRUE(spliced);
  EXPECT_TRUE(ReadOrSpanBytes(store.get(), ref, 4 * kBlockSize, 100, &spliced) == data.substr(4 * kBlockSize, 100));
  EXPECT_FALSE(spliced);
  EXPECT_EQ(ReadAll(store.get(), ref), data);
}

// A file still streaming in: blocks this run wrote may be spliced before the file verifies (how
// many depends on how far the hash got; under ASan it can fail before any), and the end-of-file
// rule holds for spans too: a whole-file reader of a file whose hash fails gets an error, never
// all of it and a clean end (read as ReadUntilError does: the store gates the last read on the
// hash, the handle fails every read after a failure).
TEST_F(DiskBlobStoreTest, SpansOfAFileBeforeItVerifiesKeepTheEndOfFileHashCheck) {
  std::string data = RandomBytes(12 * kBlockSize, 32);
  BlobRef ref = source_.Add("a.safetensors", data);
  auto store = NewStore();
  source_.corrupt_next = 1;  // the first range fetched comes back wrong
  bool spliced = false;
  std::string got;
  Status st;
  const uint64_t failures0 = store->HashFailures(ref);
  for (uint64_t off = 0; off < data.size(); off += kBlockSize) {
    // Each block twice: the first read fetches (or finds it fetched ahead), the second may splice.
    std::string a = ReadOrSpanBytes(store.get(), ref, off, kBlockSize, &spliced, &st);
    if (st.ok() && store->HashFailures(ref) != failures0) st = Status::Corruption("hash failed");
    if (!st.ok()) break;
    std::string b = ReadOrSpanBytes(store.get(), ref, off, kBlockSize, &spliced, &st);
    if (st.ok() && store->HashFailures(ref) != failures0) st = Status::Corruption("hash failed");
    if (!st.ok()) break;
    EXPECT_EQ(a, b);
    got += b;
  }
  EXPECT_EQ(st.code(), Code::kCorruption) << st.ToString();
  EXPECT_LT(got.size(), data.size());
  ASSERT_TRUE(store->WaitIdle(10000));
  // Read again after the failure: verified bytes only, spliced or not.
  got.clear();
  for (uint64_t off = 0; off < data.size(); off += kBlockSize) {
    got += ReadOrSpanBytes(store.get(), ref, off, kBlockSize, &spliced, &st);
    ASSERT_TRUE(st.ok()) << st.ToString();
  }
  EXPECT_TRUE(got == data);
  EXPECT_TRUE(store->IsVerified(ref.key));
}

// The whole-file hash reads blocks written in this run without their XXH3. A block that changed
// on disk between its write and the hash makes the hash fail; the store then checks every block,
// finds the changed one and fetches it again, and blames no mirror.
TEST_F(DiskBlobStoreTest, ABlockChangedOnDiskBeforeTheHashReadItIsRefetchedAndNoMirrorIsBlamed) {
  std::string data = RandomBytes(12 * kBlockSize, 8);  // three chunks
  BlobRef ref = source_.Add("a.bin", data);
  auto store = NewStore();
  std::vector<char> buf(kBlockSize);
  size_t n = 0;
  // Chunk 1 only (prefetch runs forward, never back): the hash cannot start before block 0.
  ASSERT_TRUE(store->Read(ref, kChunkSize, kBlockSize, buf.data(), &n).ok());
  ASSERT_TRUE(store->WaitIdle(10000));
  ASSERT_EQ(store->Stats().hashed_bytes, 0u);
  const std::string path = dir_.path() + "/blobs/" + ref.hash.substr(0, 2) + "/" + ref.key + ".data";
  int fd = open(path.c_str(), O_RDWR);
  ASSERT_GE(fd, 0);
  char c = static_cast<char>(data[kChunkSize + kBlockSize + 7] ^ 1);
  ASSERT_EQ(pwrite(fd, &c, 1, kChunkSize + kBlockSize + 7), 1);
  close(fd);
  // The rest, last chunk 0: the hash then reads every block, the changed one first of all.
  ASSERT_TRUE(store->Read(ref, 2 * kChunkSize, kBlockSize, buf.data(), &n).ok());
  ASSERT_TRUE(store->WaitIdle(10000));
  ASSERT_EQ(store->Stats().hashed_bytes, 0u);
  ASSERT_TRUE(store->Read(ref, 0, kBlockSize, buf.data(), &n).ok());
  ASSERT_TRUE(store->WaitIdle(10000));
  EXPECT_EQ(store->Stats().verify_failures, 0u);  // no mirror blamed, nothing else dropped
  EXPECT_EQ(store->Stats().corrupt_blocks, 1u);
  EXPECT_FALSE(store->IsVerified(ref.key));
  Status err;
  EXPECT_TRUE(ReadUntilError(store.get(), ref, &err) == data);
  EXPECT_TRUE(err.ok()) << err.ToString();
  ASSERT_TRUE(store->WaitIdle(10000));
  EXPECT_TRUE(store->IsVerified(ref.key));
  EXPECT_EQ(store->Stats().verify_failures, 0u);
  EXPECT_EQ(store->Stats().corrupt_blocks, 1u);
}

TEST_F(DiskBlobStoreTest, WrongBytesFromMirrorFailVerificationAndAreDropped) {
  std::string data = RandomBytes(12 * kBlockSize, 4);  // three chunks: verified in background
  BlobRef ref = source_.Add("a.safetensors", data);
  auto store = NewStore();
  source_.corrupt_next = 1;
  // Per-block checks cannot know; the whole-file hash does, before the file's last bytes are
  // returned (see AWholeFileReaderGetsAnErrorInsteadOfTheLastBytesOfACorruptFile).
  Status err;
  std::string got = ReadUntilError(store.get(), ref, &err);
  EXPECT_EQ(err.code(), Code::kCorruption) << err.ToString();
  ASSERT_TRUE(store->WaitIdle(10000));
  EXPECT_EQ(store->Stats().verify_failures, 1u);
  // The only mirror lied once. There is no other to ask, so its next answers are cached and
  // the hash judges them; a reader after the failure waits for the refetched file to verify
  // (a read of this reader that came after the failure may have started that already), and
  // gets only verified bytes.
  EXPECT_TRUE(ReadUntilError(store.get(), ref, &err) == data);
  EXPECT_TRUE(store->IsVerified(ref.key));  // before the reader got a byte
  EXPECT_TRUE(err.ok()) << err.ToString();
  ASSERT_TRUE(store->WaitIdle(10000));
  EXPECT_TRUE(store->IsVerified(ref.key));
  EXPECT_EQ(store->Stats().uncached_bytes, 0u);
}

TEST_F(DiskBlobStoreTest, BytesServedButNeverCachedThatDifferFromTheVerifiedFileCountAsAHashFailure) {
  // The head an open fetches is served from memory and never stored. Here it comes back wrong,
  // a reader reads it, and the file is then read and cached from honest answers: the file
  // verifies, and the reader of the wrong head is told (HashFailures grows), not left believing
  // the file it read was good.
  std::string data = RandomBytes(3 * kChunkSize, 45);
  BlobRef ref = source_.Add("a.safetensors", data);
  auto store = NewStore();
  source_.corrupt_next = 1;  // the head fetch
  store->OpenBlob(ref);
  std::vector<char> buf(16);
  size_t n = 0;
  ASSERT_TRUE(store->Read(ref, 0, buf.size(), buf.data(), &n).ok());
  EXPECT_NE(std::string(buf.data(), n), data.substr(0, n));  // the flipped first byte
  store->CloseBlob(ref);                                     // the head goes with the last close
  const uint64_t failures0 = store->HashFailures(ref);
  // This reader may itself be at the end of the file when the comparison counts the failure:
  // then its last read is an error (it is a reader during a failure), else it gets the file.
  Status err;
  std::string got = ReadUntilError(store.get(), ref, &err);
  EXPECT_TRUE(err.ok() ? got == data : err.code() == Code::kCorruption) << err.ToString();
  ASSERT_TRUE(store->WaitIdle(10000));
  EXPECT_TRUE(store->IsVerified(ref.key));
  EXPECT_EQ(store->HashFailures(ref), failures0 + 1);
  EXPECT_TRUE(ReadAll(store.get(), ref) == data);  // a reader after it gets the verified file
  // Honest uncached bytes compare equal: nothing more is counted.
  BlobRef other = source_.Add("b.safetensors", RandomBytes(3 * kChunkSize, 46));
  store->OpenBlob(other);
  ASSERT_TRUE(store->Read(other, 0, buf.size(), buf.data(), &n).ok());
  store->CloseBlob(other);
  ReadAll(store.get(), other);
  ASSERT_TRUE(store->WaitIdle(10000));
  EXPECT_TRUE(store->IsVerified(other.key));
  EXPECT_EQ(store->HashFailures(other), 0u);
}

TEST_F(DiskBlobStoreTest, AnOnlyMirrorThatKeepsLyingFailsEveryWholeFileReader) {
  std::string data = RandomBytes(3 * kChunkSize, 44);
  BlobRef ref = source_.Add("a.safetensors", data);
  auto store = NewStore();
  source_.corrupt_next = 1000000;  // every answer has a flipped byte
  for (int round = 0; round < 3; round++) {
    Status err;
    std::string got = ReadUntilError(store.get(), ref, &err);
    EXPECT_EQ(err.code(), Code::kCorruption) << "round " << round << ": " << err.ToString();
    EXPECT_LT(got.size(), data.size());
    ASSERT_TRUE(store->WaitIdle(10000));
    EXPECT_FALSE(store->IsVerified(ref.key));
  }
  EXPECT_GE(store->Stats().verify_failures, 3u);
}

TEST_F(DiskBlobStoreTest, AWholeFileReaderGetsAnErrorInsteadOfTheLastBytesOfACorruptFile) {
  std::string data = RandomBytes(4 * kChunkSize + 4321, 41);  // five chunks
  BlobRef ref = source_.Add("a.safetensors", data);
  auto store = NewStore();
  source_.corrupt_next = 1;  // one chunk comes back with a flipped byte
  Status err;
  std::string got = ReadUntilError(store.get(), ref, &err);
  // Reads were answered as bytes arrived (streaming); the one that reaches the end, or the first
  // after the hash failed, is not: an error, never the whole file and a clean EOF.
  EXPECT_EQ(err.code(), Code::kCorruption) << err.ToString();
  EXPECT_LT(got.size(), data.size());
  EXPECT_EQ(store->Stats().verify_failures, 1u);
  // The next reader gets the file refetched, and verified.
  ASSERT_TRUE(store->WaitIdle(10000));
  EXPECT_EQ(ReadUntilError(store.get(), ref, &err), data);
  EXPECT_TRUE(err.ok()) << err.ToString();
  ASSERT_TRUE(store->WaitIdle(10000));
  EXPECT_TRUE(store->IsVerified(ref.key));
}

TEST_F(DiskBlobStoreTest, TheWholeFileHashRunsAsBytesArriveNotInAReReadAtTheEnd) {
  std::string data = RandomBytes(16 * kChunkSize + 999, 42);  // more than prefetch brings ahead
  BlobRef ref = source_.Add("a.safetensors", data);
  auto store = NewStore();
  std::vector<char> buf(kBlockSize);
  size_t n = 0;
  // The first two chunks (and what prefetch brings after them) land, and the hash takes them in
  // while the rest of the file is still missing.
  ASSERT_TRUE(store->Read(ref, 0, kBlockSize, buf.data(), &n).ok());
  ASSERT_TRUE(store->Read(ref, kChunkSize, kBlockSize, buf.data(), &n).ok());
  ASSERT_TRUE(store->WaitIdle(10000));
  EXPECT_GE(store->Stats().hashed_bytes, 2 * kChunkSize);
  EXPECT_LT(store->Stats().hashed_bytes, data.size());
  EXPECT_FALSE(store->IsVerified(ref.key));
  // The last chunk alone, past a gap: not hashed until the gap is filled.
  const uint64_t hashed = store->Stats().hashed_bytes;
  ASSERT_TRUE(store->Read(ref, data.size() - 10, 10, buf.data(), &n).ok());
  ASSERT_TRUE(store->WaitIdle(10000));
  EXPECT_EQ(store->Stats().hashed_bytes, hashed);
  // The rest: each byte is hashed once in all, and the file is verified by the time the read of
  // its last bytes returns.
  EXPECT_EQ(ReadAll(store.get(), ref), data);
  ASSERT_TRUE(store->WaitIdle(10000));
  EXPECT_TRUE(store->IsVerified(ref.key));
  EXPECT_EQ(store->Stats().hashed_bytes, data.size());
}

TEST_F(DiskBlobStoreTest, AReaderOfTheHeadAndTheLastBlockDoesNotWaitForTheWholeFile) {
  std::string data = RandomBytes(8 * kChunkSize, 43);
  BlobRef ref = source_.Add("a.safetensors", data);
  auto store = NewStore();
  std::vector<char> buf(kBlockSize);
  size_t n = 0;
  ASSERT_TRUE(store->Read(ref, 0, 4096, buf.data(), &n).ok());
  source_.ClearRequests();
  ASSERT_TRUE(store->Read(ref, data.size() - kBlockSize, kBlockSize, buf.data(), &n).ok());
  EXPECT_EQ(std::string(buf.data(), n), data.substr(data.size() - kBlockSize));
  EXPECT_LE(source_.request_count(), 1u);  // its own chunk, not the rest of the file
  EXPECT_FALSE(store->IsVerified(ref.key));
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
  // A reader a little slower than the in-memory source (as one that uses the bytes is): prefetch
  // must then stay ahead of it. (Back to back, the reader and the fetch threads race for the two
  // cores of a CI machine and the hit count below is a coin toss.)
  std::string got;
  std::vector<char> buf(128 << 10);
  for (uint64_t off = 0;;) {
    size_t n = 0;
    ASSERT_TRUE(store->Read(ref, off, buf.size(), buf.data(), &n).ok());
    if (n == 0) break;
    got.append(buf.data(), n);
    off += n;
    std::this_thread::sleep_for(std::chrono::microseconds(500));
  }
  EXPECT_EQ(got, data);
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

// Disk space really allocated to block data under the cache dir (st_blocks of every .data file).
uint64_t AllocatedDataBytes(const std::string& dir) {
  uint64_t total = 0;
  std::error_code ec;
  for (auto& e : std::filesystem::recursive_directory_iterator(dir + "/blobs", ec)) {
    std::string p = e.path().string();
    if (p.size() < 5 || p.compare(p.size() - 5, 5, ".data") != 0) continue;
    struct stat st;
    if (stat(p.c_str(), &st) == 0) total += static_cast<uint64_t>(st.st_blocks) * 512;
  }
  return total;
}

TEST_F(DiskBlobStoreTest, VerifiedWholeFilesAreEvictedBeforePartialOnes) {
  std::string p = RandomBytes(8 * kBlockSize, 20), a = RandomBytes(3 * kBlockSize, 21),
              c = RandomBytes(3 * kBlockSize, 22);
  BlobRef rp = source_.Add("partial.safetensors", p), ra = source_.Add("a.safetensors", a),
          rc = source_.Add("c.safetensors", c);
  auto store = NewStore(8 * kBlockSize);
  std::vector<char> buf(kBlockSize);
  size_t n = 0;
  ASSERT_TRUE(store->Read(rp, 0, kBlockSize, buf.data(), &n).ok());  // caches chunk 0: 4 blocks
  ASSERT_TRUE(store->WaitIdle(10000));
  EXPECT_EQ(ReadAll(store.get(), ra), a);  // newer, complete, verified
  ASSERT_TRUE(store->WaitIdle(10000));
  ASSERT_TRUE(store->IsVerified(ra.key));
  // 7 of 8 blocks used; caching c (3 blocks) must evict. Plain LRU would drop the older partial
  // file; the policy drops the verified whole file first.
  EXPECT_EQ(ReadAll(store.get(), rc), c);
  ASSERT_TRUE(store->WaitIdle(10000));
  EXPECT_FALSE(store->IsVerified(ra.key));
  // Only a went: had the partial file been evicted, 4 more blocks would be counted.
  EXPECT_EQ(store->Stats().evicted_bytes, 3ull * kBlockSize);
  EXPECT_EQ(store->Stats().used_bytes, 7ull * kBlockSize);
  EXPECT_LE(store->Stats().peak_used_bytes, 8ull * kBlockSize);
}

// A pinned file (cache/pins.h, `modelfs prefetch --pin`) is never evicted: with the quota full of
// it, a reader of another file gets its bytes uncached, and the pinned file is still read from disk
// afterwards. Unpinned, it is evicted like any other. The store sees the pins directory change
// without being reopened.
TEST_F(DiskBlobStoreTest, PinnedFilesAreNeverEvicted) {
  std::string a = RandomBytes(6 * kBlockSize, 40), b = RandomBytes(6 * kBlockSize, 41),
              c = RandomBytes(6 * kBlockSize, 42);
  BlobRef ra = source_.Add("a.safetensors", a), rb = source_.Add("b.safetensors", b),
          rc = source_.Add("c.safetensors", c);
  auto store = NewStore(8 * kBlockSize);
  EXPECT_EQ(ReadAll(store.get(), ra), a);
  ASSERT_TRUE(store->WaitIdle(10000));
  ASSERT_TRUE(store->IsVerified(ra.key));
  Pin pin;
  pin.repo = "org/repo";
  pin.commit = ra.commit;
  pin.keys = {ra.key};
  pin.bytes = a.size();
  ASSERT_TRUE(SavePin(dir_.path(), "org--repo.json", pin).ok());

  EXPECT_EQ(ReadAll(store.get(), rb), b);  // no room without evicting a: read uncached
  ASSERT_TRUE(store->WaitIdle(10000));
  EXPECT_TRUE(store->IsVerified(ra.key));
  EXPECT_EQ(store->Stats().evicted_bytes, 0u);
  EXPECT_LE(store->Stats().peak_used_bytes, 8ull * kBlockSize);
  source_.ClearRequests();
  EXPECT_EQ(ReadAll(store.get(), ra), a);
  EXPECT_EQ(source_.request_count(), 0u) << "the pinned file was fetched again";

  // (A third file: b's chunks may still be in the in-memory spill, needing no room on disk.)
  ASSERT_TRUE(RemovePin(dir_.path(), "org--repo.json"));
  EXPECT_EQ(ReadAll(store.get(), rc), c);
  ASSERT_TRUE(store->WaitIdle(10000));
  EXPECT_FALSE(store->IsVerified(ra.key)) << "unpinned, a should have made room for c";
  EXPECT_GT(store->Stats().evicted_bytes, 0u);
}

TEST_F(DiskBlobStoreTest, OpenBlobsAreNeverEvictedAndReadsGoUncached) {
  std::string a = RandomBytes(6 * kBlockSize, 30), b = RandomBytes(6 * kBlockSize, 31);
  BlobRef ra = source_.Add("a.safetensors", a), rb = source_.Add("b.safetensors", b);
  auto store = NewStore(8 * kBlockSize);
  store->OpenBlob(ra);
  store->OpenBlob(rb);
  EXPECT_EQ(ReadAll(store.get(), ra), a);
  ASSERT_TRUE(store->WaitIdle(10000));
  EXPECT_EQ(ReadAll(store.get(), rb), b);  // only 2 blocks fit; the rest is served uncached
  ASSERT_TRUE(store->WaitIdle(10000));
  CacheStats st = store->Stats();
  EXPECT_EQ(st.evicted_bytes, 0u);
  EXPECT_GE(st.refused_bytes, 4ull * kBlockSize);
  // Each uncached range was fetched once, not once per block read: per file, the head (fetched
  // at open), the rest of block 0, the rest of chunk 0, and chunk 1.
  EXPECT_LE(source_.request_count(), 8u);
  EXPECT_LE(st.peak_used_bytes, 8ull * kBlockSize);
  size_t before = source_.request_count();
  EXPECT_EQ(ReadAll(store.get(), ra), a);  // a is whole on disk: no request
  EXPECT_EQ(source_.request_count(), before);
  // Once a is closed, another file can take its space.
  store->CloseBlob(ra);
  std::string c = RandomBytes(6 * kBlockSize, 32);
  BlobRef rc = source_.Add("c.safetensors", c);
  EXPECT_EQ(ReadAll(store.get(), rc), c);
  ASSERT_TRUE(store->WaitIdle(10000));
  EXPECT_GT(store->Stats().evicted_bytes, 0u);
  store->CloseBlob(rb);
}

// Many readers of more data than fits, at random offsets: the reserved total and the disk space
// really allocated never pass the quota, sampled while the readers run.
TEST_F(DiskBlobStoreTest, QuotaHoldsUnderConcurrentRandomReaders) {
  const uint64_t quota = 10ull * kBlockSize;
  std::vector<std::string> data;
  std::vector<BlobRef> refs;
  for (int i = 0; i < 4; i++) {
    data.push_back(RandomBytes(7 * kBlockSize + 1000 * i, 40 + i));
    refs.push_back(source_.Add("s" + std::to_string(i) + ".safetensors", data.back()));
  }
  auto store = NewStore(quota);
  std::atomic<bool> stop{false};
  std::atomic<uint64_t> peak_disk{0}, walks{0}, dropfree_walks{0};
  std::atomic<int64_t> worst_over_charge{INT64_MIN};
  // st_blocks on ext4 also counts extent-tree blocks of fragmented sparse files (filesystem
  // metadata, a few KiB); the strict check on tmpfs is in tests/integration/edge_cache_test.cc.
  const uint64_t kFsMetadataSlack = 64 << 10;
  std::thread sampler([&] {
    while (!stop) {
      // A walk over the files is not one instant: one that reads a victim before its drop and
      // another file after a write into the room the drop freed counts those blocks twice
      // (under ASan, with two walks in a row taking the smaller, about 1 run in 10 still did).
      // Only allocations going away make a walk read more than was ever on disk at once, and
      // they come from evictions alone here (no hash failures): a walk that no drop overlapped
      // (none chosen during it, none still dropping at its start) reads at most what the disk
      // held at its end. That is judged against the quota and, stricter, against the block data
      // charged at its end: a block written outside its charge shows there, whatever the quota.
      const CacheStats before = store->Stats();
      const uint64_t d = AllocatedDataBytes(dir_.path());
      const CacheStats after = store->Stats();
      walks++;
      if (before.releasing_bytes == 0 && before.evicted_bytes == after.evicted_bytes) {
        dropfree_walks++;
        if (d > peak_disk) peak_disk = d;
        const int64_t over = static_cast<int64_t>(d) - static_cast<int64_t>(after.used_bytes);
        if (over > worst_over_charge) worst_over_charge = over;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(1));  // a sampling period
    }
  });
  std::atomic<int> bad{0};
  std::vector<std::thread> readers;
  for (int t = 0; t < 6; t++) {
    readers.emplace_back([&, t] {
      std::vector<char> buf(300000);
      uint32_t x = 12345 + t;
      for (int k = 0; k < 60; k++) {
        x = x * 1103515245 + 12345;
        size_t f = (x >> 8) % refs.size();
        uint64_t off = (x >> 3) % data[f].size();
        size_t n = 0;
        if (!store->Read(refs[f], off, buf.size(), buf.data(), &n).ok() ||
            std::string(buf.data(), n) != data[f].substr(off, n)) {
          bad++;
        }
      }
    });
  }
  for (auto& r : readers) r.join();
  ASSERT_TRUE(store->WaitIdle(10000));
  stop = true;
  sampler.join();
  EXPECT_EQ(bad, 0);
  CacheStats st = store->Stats();
  EXPECT_LE(st.peak_used_bytes, quota);
  EXPECT_GT(st.evicted_bytes, 0u);
  EXPECT_GT(dropfree_walks.load(), 0u) << walks.load() << " walks, every one overlapped a drop";
  EXPECT_LE(peak_disk.load(), quota + kFsMetadataSlack);
  EXPECT_LE(worst_over_charge.load(), static_cast<int64_t>(kFsMetadataSlack))
      << "more block data on disk than charged for";
  EXPECT_LE(AllocatedDataBytes(dir_.path()), quota + kFsMetadataSlack);
}

// Disk space allocated to everything under `dir`, itself included (du -B1 --apparent-size=no).
uint64_t AllocatedDirBytes(const std::string& dir) {
  uint64_t total = 0;
  struct stat st;
  if (stat(dir.c_str(), &st) == 0) total += static_cast<uint64_t>(st.st_blocks) * 512;
  std::error_code ec;
  for (auto& e : std::filesystem::recursive_directory_iterator(dir, ec)) {
    if (lstat(e.path().c_str(), &st) == 0) total += static_cast<uint64_t>(st.st_blocks) * 512;
  }
  return total;
}

// The quota covers the whole directory: with many small files the index files and fan-out
// directories weigh more than the data, and still the directory stays within the quota; evicting
// a file not used in this run takes its index with it.
TEST_F(DiskBlobStoreTest, IndexFilesAndDirectoriesAreChargedToTheQuota) {
  const uint64_t quota = 512ull << 10;
  auto store = NewStore(quota);
  constexpr int kFiles = 60;
  uint64_t peak = 0;
  for (int i = 0; i < kFiles; i++) {
    std::string d = RandomBytes(1000, 100 + i);
    std::string name = "f";  // appended: GCC 12 -O3 reports a false -Wrestrict on "f" + string
    name += std::to_string(i);
    name += ".json";
    BlobRef r = source_.Add(name, d);
    EXPECT_EQ(ReadAll(store.get(), r), d);
    ASSERT_TRUE(store->WaitIdle(10000));
    peak = std::max(peak, AllocatedDirBytes(dir_.path()));
  }
  CacheStats st = store->Stats();
  // Uncharged, 60 files of one data page each (240 KiB) would fit and the directory would reach
  // about 60 x 16 KiB (data, index, a fan-out directory each).
  EXPECT_LE(peak, quota);
  EXPECT_GE(peak, quota / 2);
  EXPECT_LE(st.peak_used_bytes, quota);
  EXPECT_GT(st.overhead_bytes, st.used_bytes);
  EXPECT_GT(st.evicted_bytes, 0u);
  // Files used in this run keep their index (and its charge) once the quota holds them all: the
  // later files are served uncached rather than pass the quota.
  EXPECT_GT(st.refused_bytes, 0u);
  // A new store finds them all charged, and evicting files not used in that run unlinks their
  // index files: room for new ones.
  store.reset();
  auto again = NewStore(quota);
  EXPECT_EQ(again->Stats().overhead_bytes, st.overhead_bytes);
  std::string d = RandomBytes(20000, 99);
  BlobRef r = source_.Add("new.json", d);
  EXPECT_EQ(ReadAll(again.get(), r), d);
  ASSERT_TRUE(again->WaitIdle(10000));
  EXPECT_GE(again->Stats().used_bytes, 20480u);  // cached, in 5 pages
  EXPECT_LT(again->Stats().overhead_bytes, st.overhead_bytes);
  EXPECT_LE(AllocatedDirBytes(dir_.path()), quota);
}

// Metadata written beside the blocks (ChargeOther) is charged too: it evicts blocks to make room,
// and is refused when nothing can be evicted.
TEST_F(DiskBlobStoreTest, ChargeOtherEvictsBlocksAndRefusesWhenNothingCanGo) {
  std::string a = RandomBytes(3 * kBlockSize, 120);
  BlobRef ra = source_.Add("a.safetensors", a);
  auto store = NewStore(4 * kBlockSize);
  EXPECT_EQ(ReadAll(store.get(), ra), a);
  ASSERT_TRUE(store->WaitIdle(10000));
  ASSERT_EQ(store->Stats().used_bytes, 3 * kBlockSize);
  EXPECT_TRUE(store->ChargeOther(kBlockSize / 2));  // fits beside a
  EXPECT_EQ(store->Stats().evicted_bytes, 0u);
  EXPECT_TRUE(store->ChargeOther(kBlockSize));  // only by evicting a
  EXPECT_EQ(store->Stats().evicted_bytes, 3 * kBlockSize);
  EXPECT_FALSE(store->ChargeOther(4 * kBlockSize));  // more than the quota
  EXPECT_LE(store->Stats().peak_used_bytes, 4 * kBlockSize);
}

TEST_F(DiskBlobStoreTest, PercentQuotaIsResolvedAgainstTheCacheFilesystem) {
  CacheOptions o;
  o.dir = dir_.path();
  o.max_bytes = 1;  // overridden by the percentage
  o.max_fs_percent = 0.5;
  auto store = DiskBlobStore::Open(o, &source_).value();
  struct statvfs v;
  ASSERT_EQ(statvfs(dir_.path().c_str(), &v), 0);
  double fs = static_cast<double>(v.f_blocks) * v.f_frsize;
  EXPECT_NEAR(static_cast<double>(store->Stats().quota_bytes), fs * 0.005, 4096.0);
}

TEST_F(DiskBlobStoreTest, DataFileWithoutIndexIsRemovedOnOpen) {
  // What a crash between the two unlinks of an eviction leaves: space the quota would not see.
  std::string sub = dir_.path() + "/blobs/ab";
  std::filesystem::create_directories(sub);
  std::string orphan = sub + "/sha256-ab" + std::string(62, '0') + ".data";
  testing::WriteFileOrDie(orphan, std::string(1 << 20, 'x'));
  std::string kept = sub + "/sha256-ab" + std::string(62, '1');
  testing::WriteFileOrDie(kept + ".data", "y");
  testing::WriteFileOrDie(kept + ".idx", "not an index");  // has an index: left for Open to reset
  auto store = NewStore();
  EXPECT_NE(access(orphan.c_str(), F_OK), 0);
  EXPECT_EQ(access((kept + ".data").c_str(), F_OK), 0);
}

// --- Verify before read (CacheOptions::verify_before_read) ---

TEST_F(DiskBlobStoreTest, VerifyBeforeReadNeverReturnsBytesOfACorruptFetch) {
  std::string data = RandomBytes(3 * kChunkSize + 12345, 20);  // four chunks
  BlobRef ref = source_.Add("a.safetensors", data);
  auto store = NewStore(0, /*verify_before_read=*/true);
  source_.corrupt_next = 2;  // two chunks of the first fill come back wrong
  std::vector<char> buf(1000);
  size_t n = 0;
  // The very first read, near the end: answered only after the whole file verified.
  ASSERT_TRUE(store->Read(ref, data.size() - 1000, 1000, buf.data(), &n).ok());
  ASSERT_EQ(n, 1000u);
  EXPECT_EQ(std::string(buf.data(), n), data.substr(data.size() - 1000));
  EXPECT_TRUE(store->IsVerified(ref.key));
  EXPECT_EQ(store->Stats().verify_failures, 1u);  // the first fill failed its hash and was redone
  // Every read after that is byte-exact and comes from the verified blocks, with no request.
  source_.ClearRequests();
  EXPECT_EQ(ReadAll(store.get(), ref, 3 << 20), data);
  EXPECT_EQ(source_.request_count(), 0u);
}

TEST_F(DiskBlobStoreTest, VerifyBeforeReadFailsAfterRepeatedHashFailuresWithoutServing) {
  std::string data = RandomBytes(2 * kChunkSize + 7, 21);
  BlobRef ref = source_.Add("a.safetensors", data);
  auto store = NewStore(0, true);
  source_.corrupt_next = 1000;  // a mirror that always lies
  std::vector<char> buf(4096, 0);
  size_t n = 12345;
  Status s = store->Read(ref, 0, 4096, buf.data(), &n);
  EXPECT_EQ(s.code(), Code::kCorruption) << s.ToString();
  EXPECT_EQ(n, 0u);
  EXPECT_EQ(std::string(buf.data(), 4096), std::string(4096, '\0'));  // not a byte copied out
  EXPECT_EQ(store->Stats().verify_failures, 4u);  // CacheOptions::verify_attempts
  EXPECT_FALSE(store->IsVerified(ref.key));
  // Once the mirror is honest again, the same store recovers.
  source_.corrupt_next = 0;
  ASSERT_TRUE(store->Read(ref, 0, 4096, buf.data(), &n).ok());
  EXPECT_EQ(std::string(buf.data(), n), data.substr(0, 4096));
}

TEST_F(DiskBlobStoreTest, VerifyBeforeReadReturnsAFetchErrorAndRetriesLater) {
  std::string data = RandomBytes(2 * kChunkSize, 22);
  BlobRef ref = source_.Add("a.safetensors", data);
  auto store = NewStore(0, true);
  source_.fail_next = 1;
  std::vector<char> buf(100);
  size_t n = 0;
  EXPECT_EQ(store->Read(ref, 0, 100, buf.data(), &n).code(), Code::kUnavailable);
  ASSERT_TRUE(store->WaitIdle(10000));
  ASSERT_TRUE(store->Read(ref, 0, 100, buf.data(), &n).ok());
  EXPECT_EQ(std::string(buf.data(), n), data.substr(0, 100));
}

TEST_F(DiskBlobStoreTest, VerifyBeforeReadRefusesAFileLargerThanTheQuota) {
  BlobRef ref = source_.Add("big.safetensors", RandomBytes(3 * kChunkSize, 23));
  auto store = NewStore(2 * kChunkSize, true);
  std::vector<char> buf(100);
  size_t n = 0;
  EXPECT_EQ(store->Read(ref, 0, 100, buf.data(), &n).code(), Code::kIoError);
  EXPECT_EQ(source_.request_count(), 0u);  // refused before fetching anything
}

TEST_F(DiskBlobStoreTest, VerifyBeforeReadConcurrentReadersFetchEachChunkOnce) {
  std::string data = RandomBytes(6 * kChunkSize + 5, 24);
  BlobRef ref = source_.Add("a.safetensors", data);
  auto store = NewStore(0, true);
  source_.delay_ms = 50;
  std::atomic<int> good{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 8; t++) {
    threads.emplace_back([&, t] {
      std::vector<char> buf(1 << 20);
      size_t n = 0;
      uint64_t off = static_cast<uint64_t>(t) * (data.size() / 8);
      if (store->Read(ref, off, buf.size(), buf.data(), &n).ok() &&
          std::string(buf.data(), n) == data.substr(off, n) && n > 0)
        good++;
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(good, 8);
  std::set<uint64_t> starts;
  for (auto [off, len] : source_.requests()) EXPECT_TRUE(starts.insert(off).second) << off;
  EXPECT_EQ(starts.size(), 7u);
}

// Two hosts behind one source, like a MirrorSet: "evil" serves every third chunk with a flipped
// byte until it is reported bad, after which the good host serves everything.
class TwoHostSource : public RangeSource {
 public:
  explicit TwoHostSource(FakeRangeSource* inner) : inner_(inner) {}
  Status ReadAt(const BlobRef& blob, uint64_t offset, size_t len, char* buf, std::string* served_by) override {
    Status s = inner_->ReadAt(blob, offset, len, buf, served_by);
    bool evil = (offset / kChunkSize) % 3 == 1 && (!evil_reported_ || stubborn_);
    if (s.ok() && evil) buf[len / 2] ^= 0x01;
    *served_by = evil ? "evil:1" : "good:1";
    std::lock_guard<std::mutex> l(mu_);
    (evil ? evil_reads_ : good_reads_)++;
    return s;
  }
  void ReportBadSource(const BlobRef&, const std::string& served_by) override {
    std::lock_guard<std::mutex> l(mu_);
    reported_.push_back(served_by);
    if (served_by == "evil:1") evil_reported_ = true;
  }
  FakeRangeSource* inner_;
  std::mutex mu_;
  std::atomic<bool> evil_reported_{false};
  std::atomic<bool> stubborn_{false};  // evil keeps answering (and lying) after it was reported
  int evil_reads_ = 0, good_reads_ = 0;
  std::vector<std::string> reported_;
};

TEST_F(DiskBlobStoreTest, ABlamedHostThatKeepsAnsweringIsNotServedWhileAnotherServesTheFile) {
  std::string data = RandomBytes(6 * kChunkSize, 27);  // chunks 1 and 4 come from "evil"
  BlobRef ref = source_.Add("a.safetensors", data);
  TwoHostSource two(&source_);
  two.stubborn_ = true;
  CacheOptions o;
  o.dir = dir_.path();
  o.fetch_threads = 4;
  auto store = std::move(DiskBlobStore::Open(o, &two)).value();
  Status err;
  std::string got = ReadUntilError(store.get(), ref, &err);
  // The hash fails (Corruption), or, if it failed while the reader was still reading, a read of
  // evil's chunk does (below): either way an error, never the whole file.
  EXPECT_TRUE(err.code() == Code::kCorruption || err.code() == Code::kUnavailable) << err.ToString();
  EXPECT_LT(got.size(), data.size());
  ASSERT_TRUE(store->WaitIdle(10000));
  // "evil" is blamed, "good" is not: evil's next answers for chunk 1 are asked again, and when
  // evil still answers, the read fails; its bytes are not served.
  std::vector<char> buf(kBlockSize);
  size_t n = 0;
  Status s = store->Read(ref, kChunkSize, kBlockSize, buf.data(), &n);
  EXPECT_EQ(s.code(), Code::kUnavailable) << s.ToString();
  EXPECT_GE(store->Stats().distrusted_refetches, 2u);
  // Good's chunks are served.
  ASSERT_TRUE(store->Read(ref, 0, kBlockSize, buf.data(), &n).ok());
  EXPECT_TRUE(std::string(buf.data(), n) == data.substr(0, kBlockSize));
}

TEST_F(DiskBlobStoreTest, HashMismatchBlamesTheMinorityHostAndRefetchesOnlyItsChunks) {
  std::string data = RandomBytes(9 * kChunkSize, 25);  // chunks 1, 4, 7 come from "evil"
  BlobRef ref = source_.Add("a.safetensors", data);
  TwoHostSource two(&source_);
  CacheOptions o;
  o.dir = dir_.path();
  o.fetch_threads = 4;
  o.verify_before_read = true;
  auto store = std::move(DiskBlobStore::Open(o, &two)).value();
  EXPECT_EQ(ReadAll(store.get(), ref, 2 << 20), data);
  EXPECT_TRUE(store->IsVerified(ref.key));
  EXPECT_EQ(store->Stats().verify_failures, 1u);
  // Only the minority host was blamed, and only its three chunks were fetched again.
  ASSERT_EQ(two.reported_.size(), 1u);
  EXPECT_EQ(two.reported_[0], "evil:1");
  EXPECT_EQ(source_.request_count(), 9u + 3u);
}

// A safetensors shard: header, then tensors a [0, 20 MiB), b [20, 34 MiB), c [34, 74 MiB). Tensor
// b starts further from the header than a stream's forward tolerance (16 MiB), as a tensor near the
// end of a real shard does.
TEST_F(DiskBlobStoreTest, PrefetchOfAStreamInsideOneTensorStopsAtThatTensorsEnd) {
  std::string h = R"({"a":{"dtype":"U8","shape":[20971520],"data_offsets":[0,20971520]},)"
                  R"("b":{"dtype":"U8","shape":[14680064],"data_offsets":[20971520,35651584]},)"
                  R"("c":{"dtype":"U8","shape":[41943040],"data_offsets":[35651584,77594624]}})";
  std::string le(8, '\0');
  for (int i = 0; i < 8; i++) le[i] = static_cast<char>((h.size() >> (8 * i)) & 0xff);
  std::string data = le + h + RandomBytes(74 << 20, 26);
  BlobRef ref = source_.Add("model.safetensors", data);
  auto store = NewStore();
  const uint64_t base = 8 + h.size();
  std::vector<char> buf(1 << 20);
  size_t n = 0;
  // The loader reads the header (8 bytes, then the JSON), then all of tensor b in 1 MiB reads.
  ASSERT_TRUE(store->Read(ref, 0, 8, buf.data(), &n).ok());
  ASSERT_TRUE(store->Read(ref, 8, h.size(), buf.data(), &n).ok());
  ASSERT_TRUE(store->WaitIdle(10000));
  const uint64_t b_begin = base + (20u << 20), b_end = base + (34u << 20);
  for (uint64_t off = b_begin; off < b_end; off += n) {
    ASSERT_TRUE(store->Read(ref, off, std::min<uint64_t>(buf.size(), b_end - off), buf.data(), &n).ok());
    ASSERT_EQ(std::string(buf.data(), n), data.substr(off, n));
  }
  ASSERT_TRUE(store->WaitIdle(10000));
  const uint64_t last_needed = (b_end - 1) / kChunkSize;
  for (auto [off, len] : source_.requests()) {
    EXPECT_LE(off / kChunkSize, last_needed) << "prefetched past tensor b: chunk at " << off;
  }
  // Moving well into tensor c (past the kernel's readahead distance) makes it a sequential reader
  // again: prefetch runs ahead.
  source_.ClearRequests();
  for (uint64_t off = b_end; off < b_end + (18u << 20); off += n) {
    ASSERT_TRUE(store->Read(ref, off, buf.size(), buf.data(), &n).ok());
  }
  ASSERT_TRUE(store->WaitIdle(10000));
  uint64_t furthest = 0;
  for (auto [off, len] : source_.requests()) furthest = std::max<uint64_t>(furthest, off + len);
  EXPECT_GT(furthest, b_end + (22u << 20));
}

TEST_F(DiskBlobStoreTest, FirstBytesOfARangeReachTheReaderWhileTheRestIsOnTheWire) {
  std::string data = RandomBytes(8 * kBlockSize, 40);
  BlobRef ref = source_.Add("a.bin", data);
  auto store = NewStore();
  source_.hold_after_bytes = kBlockSize;  // every range stops after its first block until Release
  std::vector<char> buf(64 << 10);
  size_t n = 0;
  // Returns although the range that brings these bytes (blocks 0-3) has not ended.
  ASSERT_TRUE(store->Read(ref, 100, buf.size(), buf.data(), &n).ok());
  EXPECT_EQ(std::string(buf.data(), n), data.substr(100, buf.size()));
  ASSERT_TRUE(source_.WaitHeld(1));
  auto reqs = source_.requests();
  ASSERT_EQ(reqs.size(), 1u);
  EXPECT_EQ(reqs[0], std::make_pair(uint64_t{0}, size_t{kChunkSize}));
  // A reader of the held part waits for it, and gets it once it lands, from the same request.
  std::atomic<bool> got{false};
  std::thread t([&] {
    std::vector<char> b2(1000);
    size_t m = 0;
    got = store->Read(ref, 3 * kBlockSize, b2.size(), b2.data(), &m).ok() &&
          std::string(b2.data(), m) == data.substr(3 * kBlockSize, 1000);
  });
  // Seen waiting (a bounded poll: a reader that never waits never shows there), it cannot have
  // its bytes before the held range goes on (and it asks nothing of its own: chunk0 below).
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (store->Stats().waiting_reads == 0 && !got && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::yield();
  }
  EXPECT_EQ(store->Stats().waiting_reads, 1u);
  EXPECT_FALSE(got);
  source_.Release();
  t.join();
  EXPECT_TRUE(got);
  ASSERT_TRUE(store->WaitIdle(10000));
  // The first chunk was asked for once (the second read, a stream now, also prefetched chunk 1).
  int chunk0 = 0;
  for (auto [off, len] : source_.requests()) chunk0 += off < kChunkSize;
  EXPECT_EQ(chunk0, 1);
  EXPECT_EQ(ReadAll(store.get(), ref), data);
}

TEST_F(DiskBlobStoreTest, ABlobOfOneRangeIsNotHandedOverBeforeItsHashMatched) {
  std::string data = RandomBytes(3 * kBlockSize, 41);  // one chunk: verified inline
  BlobRef ref = source_.Add("a.bin", data);
  auto store = NewStore();
  source_.hold_after_bytes = kBlockSize;
  source_.corrupt_next = 1;
  std::vector<char> buf(1000);
  size_t n = 0;
  // The corrupt first answer is never handed over (no streaming for it), the refetch is good.
  ASSERT_TRUE(store->Read(ref, 0, buf.size(), buf.data(), &n).ok());
  EXPECT_EQ(std::string(buf.data(), n), data.substr(0, 1000));
  EXPECT_EQ(source_.request_count(), 2u);
}

TEST_F(DiskBlobStoreTest, OpeningAFileFetchesItsHeadAndALookupFetchesNothing) {
  std::string data = RandomBytes(10 * kBlockSize, 42);
  BlobRef ref = source_.Add("a.safetensors", data);
  auto store = NewStore();
  store->PrepareBlob(ref);  // the fake source has nothing to prepare: no bytes are asked for
  ASSERT_TRUE(store->WaitIdle(10000));
  EXPECT_EQ(source_.request_count(), 0u);
  store->OpenBlob(ref);
  ASSERT_TRUE(store->WaitIdle(10000));
  auto reqs = source_.requests();
  ASSERT_EQ(reqs.size(), 1u);
  EXPECT_EQ(reqs[0], std::make_pair(uint64_t{0}, size_t{kHeadBytes}));  // the head, not a block
  // Reads inside the head are served from it, byte-exact, with no other request.
  std::vector<char> buf(kHeadBytes);
  size_t n = 0;
  ASSERT_TRUE(store->Read(ref, 0, 8, buf.data(), &n).ok());
  ASSERT_EQ(n, 8u);
  EXPECT_EQ(std::string(buf.data(), 8), data.substr(0, 8));
  ASSERT_TRUE(store->Read(ref, 100, kHeadBytes - 100, buf.data(), &n).ok());
  ASSERT_EQ(n, kHeadBytes - 100);
  EXPECT_EQ(std::string(buf.data(), n), data.substr(100, n));
  EXPECT_EQ(source_.request_count(), 1u);
  // The head is not a block: nothing of it is on disk. A read past it fetches the rest of block 0
  // (the head's bytes are not asked for again), and block 0 is then whole on disk.
  EXPECT_EQ(store->Stats().used_bytes, 0u);
  ASSERT_TRUE(store->Read(ref, kHeadBytes - 10, 20, buf.data(), &n).ok());
  ASSERT_EQ(n, 20u);
  EXPECT_EQ(std::string(buf.data(), 20), data.substr(kHeadBytes - 10, 20));
  ASSERT_TRUE(store->WaitIdle(10000));
  reqs = source_.requests();
  ASSERT_EQ(reqs.size(), 2u);
  EXPECT_EQ(reqs[1], std::make_pair(uint64_t{kHeadBytes}, size_t{kBlockSize - kHeadBytes}));
  EXPECT_EQ(store->Stats().used_bytes, uint64_t{kBlockSize});
  store->CloseBlob(ref);
  source_.ClearRequests();
  ASSERT_EQ(ReadAll(store.get(), ref).substr(0, kBlockSize), data.substr(0, kBlockSize));
}

TEST_F(DiskBlobStoreTest, AWholeFileReaderStartsTheNextShardAndALazyReaderDoesNot) {
  // b is the lookahead on a near source: one start window (8 MiB, two chunks), all of it.
  const std::string a_data = RandomBytes(10 * kBlockSize, 50), b_data = RandomBytes(8 * kBlockSize, 51);
  BlobRef a = source_.Add("model-00001-of-00002.bin", a_data);
  BlobRef b = source_.Add("model-00002-of-00002.bin", b_data);
  {
    // A reader of a's last block only: b is not touched.
    auto store = NewStore();
    store->HintNext(a, b);
    std::vector<char> buf(kBlockSize);
    size_t n = 0;
    ASSERT_TRUE(store->Read(a, 9 * kBlockSize, kBlockSize, buf.data(), &n).ok());
    ASSERT_TRUE(store->WaitIdle(10000));
    source_.ClearRequests();
    ASSERT_EQ(ReadAll(store.get(), b), b_data);
    EXPECT_GT(source_.request_count(), 0u);  // b was not fetched ahead
  }
  std::filesystem::remove_all(dir_.path() + "/blobs");
  source_.ClearRequests();
  auto store = NewStore();
  store->HintNext(a, b);
  ASSERT_EQ(ReadAll(store.get(), a), a_data);  // a stream from a's start to its end
  ASSERT_TRUE(store->WaitIdle(10000));
  source_.ClearRequests();
  ASSERT_EQ(ReadAll(store.get(), b), b_data);
  EXPECT_EQ(source_.request_count(), 0u);  // all of b came ahead of its reader
}

TEST_F(DiskBlobStoreTest, ALoaderInItsOwnTensorOrderStartsTheNextShardOnceItHasHalfTheFile) {
  // Six 3 MiB tensors after a 1 KiB header (19 blocks), read in the order t5, t2, t0 (a
  // random-order loader). The header read brings chunk 0 (blocks 0-3).
  const uint64_t t = 3 * kBlockSize;
  const std::string a_data =
      SafetensorsAt1KiB({{"t0", t}, {"t1", t}, {"t2", t}, {"t3", t}, {"t4", t}, {"t5", t}}, 52);
  const std::string b_data = RandomBytes(8 * kBlockSize, 53);
  BlobRef a = source_.Add("model-00001-of-00002.safetensors", a_data);
  BlobRef b = source_.Add("model-00002-of-00002.safetensors", b_data);
  auto store = NewStore();
  store->HintNext(a, b);
  std::vector<char> buf(t);
  size_t n = 0;
  auto read_tensor = [&](int i) {
    ASSERT_TRUE(store->Read(a, 1024 + i * t, t, buf.data(), &n).ok());
    ASSERT_EQ(std::string(buf.data(), n), a_data.substr(1024 + i * t, t));
    ASSERT_TRUE(store->WaitIdle(10000));
  };
  ASSERT_TRUE(store->Read(a, 0, 8, buf.data(), &n).ok());  // the header: layout learnt
  ASSERT_TRUE(store->WaitIdle(10000));
  read_tensor(5);
  source_.ClearRequests();
  read_tensor(2);  // 8 of 19 MiB on disk when it starts: b is not started
  for (const auto& r : source_.requests()) EXPECT_GE(r.first, 6 * kBlockSize) << "a request for b";
  read_tensor(0);  // 12 of 19: b comes ahead
  source_.ClearRequests();
  ASSERT_EQ(ReadAll(store.get(), b), b_data);
  EXPECT_EQ(source_.request_count(), 0u);
}

TEST_F(DiskBlobStoreTest, ALoaderThatGoesBackToAnEarlierTensorHasTheRestOfTheFileFilled) {
  // Eight 6 MiB tensors after a 1 KiB header (49 blocks); the header read brings chunk 0. Going
  // back counts only further than the kernel reorders one stream (2 x 8 MiB readahead).
  const uint64_t t = 6 * kBlockSize;
  std::vector<std::pair<std::string, uint64_t>> tensors;
  for (int i = 0; i < 8; i++) tensors.push_back({std::string(1, 't').append(std::to_string(i)), t});
  const std::string data = SafetensorsAt1KiB(tensors, 54);
  BlobRef ref = source_.Add("model.safetensors", data);
  auto fetched = [&](int i) {  // any block wholly inside tensor i
    const uint64_t lo = (1024 + i * t + kBlockSize - 1) / kBlockSize * kBlockSize;
    const uint64_t hi = (1024 + (i + 1) * t) / kBlockSize * kBlockSize;
    for (auto [off, len] : source_.requests())
      if (off < hi && off + len > lo) return true;
    return false;
  };
  for (const std::vector<int>& order : {std::vector<int>{2, 4, 7}, std::vector<int>{4, 3}, std::vector<int>{6, 1}}) {
    const bool goes_back = order.back() == 1;  // 4, 3 goes back 12 MiB from the furthest read
    SCOPED_TRACE(::testing::Message() << "order " << order[0] << ", " << order[1]);
    std::filesystem::remove_all(dir_.path() + "/blobs");
    source_.ClearRequests();
    auto store = NewStore();
    std::vector<char> buf(t);
    size_t n = 0;
    ASSERT_TRUE(store->Read(ref, 0, 8, buf.data(), &n).ok());  // the header: layout learnt
    ASSERT_TRUE(store->WaitIdle(10000));
    for (int i : order) {
      ASSERT_TRUE(store->Read(ref, 1024 + i * t, t, buf.data(), &n).ok());
      ASSERT_TRUE(std::string(buf.data(), n) == data.substr(1024 + i * t, t));
      ASSERT_TRUE(store->WaitIdle(10000));
    }
    uint64_t bytes = 0;
    for (auto [off, len] : source_.requests()) bytes += len;
    if (!goes_back) {
      // What it read, rounded to chunks as a stream's demand reads are, and no fill.
      EXPECT_LE(bytes, kChunkSize + order.size() * (t + kChunkSize));
      EXPECT_FALSE(fetched(1));  // (t0 shares chunk 0 with the header)
      continue;
    }
    // Back to t1: all of the file came, each byte once, and the tensors not read are on disk.
    EXPECT_EQ(bytes, data.size());
    source_.ClearRequests();
    for (int i : {0, 2, 3, 4, 5, 7}) {
      ASSERT_TRUE(store->Read(ref, 1024 + i * t, t, buf.data(), &n).ok());
      ASSERT_TRUE(std::string(buf.data(), n) == data.substr(1024 + i * t, t));
    }
    EXPECT_EQ(source_.request_count(), 0u);
  }
}

// A loader in its own tensor order (mmap, random) reads the last tensor whenever its order says,
// not at the end of its load: the store does not hold that read until the whole-file hash has
// judged a file whose every byte is on disk or on the wire (the gate for readers in file order),
// or the loader would wait, tensor after tensor, for a hash that cannot pass the ranges still on
// the wire (about 0.2 s per 500 MB shard on loopback, for bytes it did not need to wait for).
TEST_F(DiskBlobStoreTest, ALoaderInItsOwnOrderIsNotHeldAtTheLastTensorForTheHash) {
  const uint64_t t = 6 * kBlockSize;
  std::vector<std::pair<std::string, uint64_t>> tensors;
  for (int i = 0; i < 4; i++) tensors.push_back({std::string(1, 't').append(std::to_string(i)), t});
  const std::string data = SafetensorsAt1KiB(tensors, 57);
  BlobRef ref = source_.Add("model.safetensors", data);
  auto store = NewStore();
  std::vector<char> buf(t);
  size_t n = 0;
  ASSERT_TRUE(store->Read(ref, 0, 8, buf.data(), &n).ok());  // the header: layout learnt
  ASSERT_TRUE(store->WaitIdle(10000));
  auto read_tensor = [&](int i, std::vector<char>* into) {
    size_t got = 0;
    Status s = store->Read(ref, 1024 + i * t, t, into->data(), &got);
    return s.ok() && std::string(into->data(), got) == data.substr(1024 + i * t, t);
  };
  ASSERT_TRUE(read_tensor(3, &buf));  // the last tensor first, all of it on disk
  ASSERT_TRUE(store->WaitIdle(10000));
  // Back to t1: a reader in its own order, and the rest of the file is filled. Its ranges stay
  // on the wire after their first block, so the hash cannot reach the end.
  source_.hold_after_bytes = kBlockSize;
  std::atomic<bool> t1_ok{false};
  std::thread loader([&] {
    std::vector<char> mine(t);
    t1_ok = read_tensor(1, &mine);
  });
  ASSERT_TRUE(source_.WaitHeld(1));
  // Every block is on disk or on the wire: a reader in file order would wait for the hash here.
  std::atomic<bool> tail_done{false}, tail_ok{false};
  std::thread tail([&] {
    std::vector<char> last(100);
    size_t got = 0;
    tail_ok = store->Read(ref, data.size() - 100, 100, last.data(), &got).ok() && got == 100 &&
              std::string(last.data(), 100) == data.substr(data.size() - 100);
    tail_done = true;
  });
  // The tail read's bytes are on disk: it returns at once, while the ranges are still held (the
  // deadline turns a read held for the hash into a failure; the fake holds for 10 s).
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
  while (!tail_done && std::chrono::steady_clock::now() < deadline) std::this_thread::yield();
  EXPECT_TRUE(tail_done.load()) << "the read of the last tensor waited for the whole-file hash";
  EXPECT_FALSE(store->IsVerified(ref.key));
  source_.Release();
  tail.join();
  loader.join();
  EXPECT_TRUE(tail_ok.load());
  EXPECT_TRUE(t1_ok.load());
  ASSERT_TRUE(store->WaitIdle(10000));
  EXPECT_TRUE(store->IsVerified(ref.key));  // the hash still judges the file, after the reads
}

TEST_F(DiskBlobStoreTest, RanksReadingAPartEachAreNotAReaderInItsOwnOrder) {
  // Four 12 MiB tensors; first reads at the starts of tensors 3, 0 and 1: two of them go back
  // into holes. With one open handle that is a reader in its own order (the file is filled); with
  // four, the ranks of a tensor-parallel load, each reading its own part (no fill).
  const uint64_t t = 12 * kBlockSize;
  const std::string data = SafetensorsAt1KiB({{"a", t}, {"b", t}, {"c", t}, {"d", t}}, 46);
  BlobRef ref = source_.Add("model.safetensors", data);
  for (int opens : {1, 4}) {
    SCOPED_TRACE(::testing::Message() << opens << " open handles");
    std::filesystem::remove_all(dir_.path() + "/blobs");
    source_.ClearRequests();
    CacheOptions o;
    o.dir = dir_.path();
    o.fetch_threads = 4;
    o.initial_window = o.max_window = 4 << 20;  // a first read fetches 4 MiB of its tensor
    auto store = std::move(DiskBlobStore::Open(o, &source_)).value();
    for (int i = 0; i < opens; i++) store->OpenBlob(ref);
    ASSERT_TRUE(store->WaitIdle(10000));
    std::vector<char> buf(kBlockSize);
    size_t n = 0;
    for (int i : {3, 0, 1}) {
      ASSERT_TRUE(store->Read(ref, 1024 + i * t, buf.size(), buf.data(), &n).ok());
      ASSERT_TRUE(std::string(buf.data(), n) == data.substr(1024 + i * t, buf.size()));
    }
    ASSERT_TRUE(store->WaitIdle(10000));
    uint64_t bytes = 0;
    for (auto [off, len] : source_.requests()) bytes += len;
    if (opens == 1) {
      EXPECT_EQ(bytes, data.size());
    } else {
      EXPECT_LT(bytes, data.size() * 3 / 4);
    }
    for (int i = 0; i < opens; i++) store->CloseBlob(ref);
  }
}

TEST_F(DiskBlobStoreTest, AStreamFromTheFirstTensorAfterTheOpensHeadReadsOnPastIt) {
  // An open fetches the head (the header); a loader in file order then reads the first tensor, a,
  // and goes on to b: the stream is not capped at a's end, as it is for a later tensor.
  const uint64_t a_len = 6 * kBlockSize, b_len = 10 * kBlockSize;
  std::string data = SafetensorsAt1KiB({{"a", a_len}, {"b", b_len}, {"c", 20 * kBlockSize}}, 44);
  BlobRef ref = source_.Add("model.safetensors", data);
  auto store = NewStore();
  store->OpenBlob(ref);
  ASSERT_TRUE(store->WaitIdle(10000));
  std::vector<char> buf(256 << 10);  // past the head
  size_t n = 0;
  ASSERT_TRUE(store->Read(ref, 0, 8, buf.data(), &n).ok());  // from the head
  source_.ClearRequests();
  ASSERT_TRUE(store->Read(ref, 1024, buf.size(), buf.data(), &n).ok());
  EXPECT_TRUE(std::string(buf.data(), n) == data.substr(1024, buf.size()));
  ASSERT_TRUE(store->WaitIdle(10000));
  uint64_t hi = 0;
  for (auto [off, len] : source_.requests()) hi = std::max<uint64_t>(hi, off + len);
  EXPECT_GT(hi, 1024 + a_len + kBlockSize);  // into b, a whole-file stream's window
  EXPECT_LE(hi, 1024 + a_len + b_len);       // one start window (two chunks on a near source)
  store->CloseBlob(ref);
}

TEST_F(DiskBlobStoreTest, AfterTheModelsIndexAFirstReadPastTheFirstTensorFillsTheFile) {
  // A loader that read the model's index (HintLoad) and starts this shard at its third tensor: it
  // reads all of the file in its own order. Without the index, the same read fetches that tensor.
  const uint64_t t = 6 * kBlockSize;
  const std::string data = SafetensorsAt1KiB({{"a", t}, {"b", t}, {"c", t}, {"d", t}}, 45);
  BlobRef ref = source_.Add("model-00001-of-00002.safetensors", data);
  for (bool hinted : {false, true}) {
    SCOPED_TRACE(hinted ? "after the index" : "without it");
    std::filesystem::remove_all(dir_.path() + "/blobs");
    source_.ClearRequests();
    auto store = NewStore();
    if (hinted) store->HintLoad(ref);
    store->OpenBlob(ref);
    ASSERT_TRUE(store->WaitIdle(10000));
    std::vector<char> buf(kBlockSize);
    size_t n = 0;
    ASSERT_TRUE(store->Read(ref, 0, 8, buf.data(), &n).ok());  // from the head
    ASSERT_TRUE(store->Read(ref, 1024 + 2 * t, buf.size(), buf.data(), &n).ok());
    EXPECT_TRUE(std::string(buf.data(), n) == data.substr(1024 + 2 * t, buf.size()));
    ASSERT_TRUE(store->WaitIdle(10000));
    uint64_t bytes = 0;
    for (auto [off, len] : source_.requests()) bytes += len;
    if (hinted) {
      EXPECT_GE(bytes, data.size());
    } else {
      EXPECT_LE(bytes, kHeadBytes + t + 2 * kBlockSize);
    }
    store->CloseBlob(ref);
  }
}

// A read of the model's index (HintLoad) starts the first shard's first window before the
// loader opens it (its connections leave slow start behind the index and the header); the
// loader's reads of that window then find it cached or on the wire, and nothing past the window
// is fetched on the index's word alone.
TEST_F(DiskBlobStoreTest, AReadOfTheModelsIndexStartsTheFirstShardsFirstWindow) {
  const std::string data = RandomBytes(5 * kChunkSize, 46);
  BlobRef ref = source_.Add("model-00001-of-00002.safetensors", data);
  auto store = NewStore();
  store->HintLoad(ref);
  ASSERT_TRUE(store->WaitIdle(10000));
  // On a near source the start window is two chunks (CacheOptions::initial_window).
  uint64_t hi = 0;
  for (auto [off, len] : source_.requests()) hi = std::max<uint64_t>(hi, off + len);
  EXPECT_EQ(hi, 2 * kChunkSize);
  source_.ClearRequests();
  store->OpenBlob(ref);
  std::vector<char> buf(kBlockSize);
  for (uint64_t off = 0; off < 2 * kChunkSize; off += kBlockSize) {
    size_t n = 0;
    ASSERT_TRUE(store->Read(ref, off, buf.size(), buf.data(), &n).ok());
    ASSERT_TRUE(std::string(buf.data(), n) == data.substr(off, kBlockSize)) << off;
  }
  for (auto [off, len] : source_.requests()) EXPECT_GE(off, 2 * kChunkSize) << "refetched " << off;
  store->CloseBlob(ref);
}

TEST_F(DiskBlobStoreTest, AReadAtATensorFetchesThatTensorAtOnceAndNothingPastIt) {
  // Tensor b spans blocks 5-15 of the file (a 10 MiB tensor starting 5.5 MiB in; the header
  // read brings chunk 0).
  const uint64_t a_len = 5 * kBlockSize + kBlockSize / 2, b_len = 10 * kBlockSize, c_len = 20 * kBlockSize;
  std::string data = SafetensorsAt1KiB({{"a", a_len}, {"b", b_len}, {"c", c_len}}, 43);
  BlobRef ref = source_.Add("model.safetensors", data);
  auto store = NewStore();
  std::vector<char> buf(4096);
  size_t n = 0;
  ASSERT_TRUE(store->Read(ref, 0, 8, buf.data(), &n).ok());  // the header: layout learnt
  ASSERT_TRUE(store->WaitIdle(10000));
  source_.ClearRequests();
  const uint64_t b_begin = 1024 + a_len, b_end = b_begin + b_len;
  ASSERT_TRUE(store->Read(ref, b_begin, buf.size(), buf.data(), &n).ok());
  EXPECT_EQ(std::string(buf.data(), n), data.substr(b_begin, buf.size()));
  ASSERT_TRUE(store->WaitIdle(10000));
  // One small read asked for all of b, in ranges no larger than a chunk, and nothing past it.
  uint64_t lo = UINT64_MAX, hi = 0, bytes = 0;
  for (auto [off, len] : source_.requests()) {
    lo = std::min<uint64_t>(lo, off);
    hi = std::max<uint64_t>(hi, off + len);
    bytes += len;
    EXPECT_LE(len, kChunkSize);
  }
  EXPECT_EQ(lo, b_begin / kBlockSize * kBlockSize);
  EXPECT_EQ(hi, (b_end + kBlockSize - 1) / kBlockSize * kBlockSize);
  EXPECT_EQ(bytes, hi - lo);  // no byte twice
  EXPECT_GE(source_.request_count(), 3u);  // several requests at once, not one 11 MiB stream
  // The rest of b is then read from disk.
  source_.ClearRequests();
  for (uint64_t off = b_begin; off < b_end; off += n) {
    ASSERT_TRUE(store->Read(ref, off, std::min<uint64_t>(buf.size(), b_end - off), buf.data(), &n).ok());
    ASSERT_EQ(std::string(buf.data(), n), data.substr(off, n));
    off += 1 << 20;  // sparse reads: not a stream
  }
  EXPECT_EQ(source_.request_count(), 0u);
}

TEST(PrefetchStartWindowTest, OneDoublingPerTenMillisecondsOfLatencyUpToTheCap) {
  const uint64_t init = 8 << 20, max = 128 << 20;
  EXPECT_EQ(PrefetchStartWindow(0, init, max), init);        // not measured yet
  EXPECT_EQ(PrefetchStartWindow(900, init, max), init);      // loopback
  EXPECT_EQ(PrefetchStartWindow(10000, init, max), 2 * init);
  EXPECT_EQ(PrefetchStartWindow(45000, init, max), 8 * init);  // 10, 20, 40 ms
  EXPECT_EQ(PrefetchStartWindow(400000, init, max), max);    // a far link: the cap at once
  EXPECT_EQ(PrefetchStartWindow(400000, init, init / 2), init);  // a cap below the start
}

TEST_F(DiskBlobStoreTest, FillOnOpenFetchesTheWholeFileOnceInTheBackground) {
  std::string data = RandomBytes(9 * kChunkSize + 17, 27);
  BlobRef ref = source_.Add("model.safetensors", data);
  BlobRef small = source_.Add("config.json", RandomBytes(1000, 28), false);
  CacheOptions o;
  o.dir = dir_.path();
  o.fetch_threads = 4;
  o.max_inflight_chunks = 3;  // the fill keeps going past the in-flight budget
  o.fill_on_open = true;
  auto store = std::move(DiskBlobStore::Open(o, &source_)).value();
  store->OpenBlob(small);  // one chunk: nothing to fill
  store->OpenBlob(ref);
  for (int i = 0; i < 500 && !store->IsVerified(ref.key); i++) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  ASSERT_TRUE(store->WaitIdle(10000));
  EXPECT_TRUE(store->IsVerified(ref.key));  // filled and hashed with no read at all
  std::set<uint64_t> starts;
  for (auto [off, len] : source_.requests()) EXPECT_TRUE(starts.insert(off).second) << "twice: " << off;
  EXPECT_EQ(starts.size(), 10u);  // every chunk of the big file once; nothing of the small one
  source_.ClearRequests();
  EXPECT_EQ(ReadAll(store.get(), ref, 3 << 20), data);
  EXPECT_EQ(source_.request_count(), 0u);
  store->CloseBlob(ref);
  store->CloseBlob(small);
}

}  // namespace
}  // namespace modelfs
