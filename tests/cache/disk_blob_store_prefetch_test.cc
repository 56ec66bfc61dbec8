// DiskBlobStore: prefetch, tensors, lookahead, loaders in their own order, fills.
#include "tests/cache/disk_blob_store_fixture.h"

namespace modelfs {
namespace {

using testing::FakeRangeSource;
using testing::RandomBytes;
using testing::TempDir;

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
