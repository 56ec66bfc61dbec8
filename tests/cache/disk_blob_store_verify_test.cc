// DiskBlobStore: the whole-file hash, fail closed at the end, verify before read, blame.
#include "tests/cache/disk_blob_store_fixture.h"

namespace modelfs {
namespace {

using testing::FakeRangeSource;
using testing::RandomBytes;
using testing::TempDir;

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

}  // namespace
}  // namespace modelfs
