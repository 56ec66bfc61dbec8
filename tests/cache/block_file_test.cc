#include "cache/block_file.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include "tests/testing/fake_range_source.h"
#include "tests/testing/temp_dir.h"

namespace modelfs {
namespace {

using testing::RandomBytes;
using testing::TempDir;

constexpr uint64_t kSize = 3 * kBlockSize + 12345;  // 3 full blocks and a short last one

// Flips one bit of the byte at `at` of the data file behind the cache's back (`data` is what
// was written there).
void FlipByte(const TempDir& dir, const std::string& data, off_t at) {
  int fd = open((dir.path() + "/k.data").c_str(), O_RDWR);
  ASSERT_GE(fd, 0);
  char c = static_cast<char>(data[at] ^ 1);
  ASSERT_EQ(pwrite(fd, &c, 1, at), 1);
  close(fd);
}

TEST(BlockFileTest, WriteReadAndPersist) {
  TempDir dir;
  std::string data = RandomBytes(kSize, 1);
  {
    auto f = BlockFile::Open(dir.path(), "k", kSize);
    ASSERT_TRUE(f.ok()) << f.status().ToString();
    EXPECT_EQ((*f)->num_blocks(), 4u);
    EXPECT_EQ((*f)->BlockLen(3), 12345u);
    std::vector<char> buf(kBlockSize);
    EXPECT_FALSE((*f)->ReadBlock(1, buf.data()));
    ASSERT_TRUE((*f)->WriteBlock(1, data.data() + kBlockSize).ok());
    ASSERT_TRUE((*f)->WriteBlock(3, data.data() + 3 * kBlockSize).ok());
    ASSERT_TRUE((*f)->ReadBlock(1, buf.data()));
    EXPECT_EQ(0, memcmp(buf.data(), data.data() + kBlockSize, kBlockSize));
    EXPECT_FALSE((*f)->AllPresent());
    EXPECT_EQ((*f)->PresentBytes(), kBlockSize + 12345);
  }
  // Reopen: blocks and their checksums survive.
  auto f = BlockFile::Open(dir.path(), "k", kSize);
  ASSERT_TRUE(f.ok());
  std::vector<char> buf(kBlockSize);
  EXPECT_TRUE((*f)->Present(1));
  EXPECT_FALSE((*f)->Present(0));
  ASSERT_TRUE((*f)->ReadBlock(3, buf.data()));
  EXPECT_EQ(0, memcmp(buf.data(), data.data() + 3 * kBlockSize, 12345));
  EXPECT_FALSE((*f)->verified());
}

TEST(BlockFileTest, CorruptBlockIsAMissAndIsForgotten) {
  TempDir dir;
  std::string data = RandomBytes(kSize, 2);
  auto f = BlockFile::Open(dir.path(), "k", kSize);
  ASSERT_TRUE(f.ok());
  ASSERT_TRUE((*f)->WriteBlock(0, data.data()).ok());
  FlipByte(dir, data, 500);
  std::vector<char> buf(kBlockSize);
  EXPECT_FALSE((*f)->ReadBlock(0, buf.data()));
  EXPECT_FALSE((*f)->Present(0));
  EXPECT_EQ((*f)->corrupt_blocks(), 1u);
}

// The whole-file hash reads blocks written in this run without their XXH3 (it judges the bytes
// itself); a block from an earlier run is still checked on that read.
TEST(BlockFileTest, ReadBlockUncheckedSkipsTheChecksumOnlyOfBlocksCheckedInThisRun) {
  TempDir dir;
  std::string data = RandomBytes(kSize, 2);
  {
    auto f = BlockFile::Open(dir.path(), "k", kSize);
    ASSERT_TRUE(f.ok());
    ASSERT_TRUE((*f)->WriteBlock(0, data.data()).ok());
    ASSERT_TRUE((*f)->WriteBlock(1, data.data() + kBlockSize).ok());
  }
  auto f = BlockFile::Open(dir.path(), "k", kSize);
  ASSERT_TRUE(f.ok());
  ASSERT_TRUE((*f)->WriteBlock(0, data.data()).ok());  // block 0 checked in this run, block 1 not
  FlipByte(dir, data, 500);
  FlipByte(dir, data, kBlockSize + 500);
  std::vector<char> buf(kBlockSize);
  ASSERT_TRUE((*f)->ReadBlockUnchecked(0, buf.data()));  // the changed bytes, for the hash to judge
  EXPECT_EQ(buf[500], static_cast<char>(data[500] ^ 1));
  EXPECT_EQ((*f)->corrupt_blocks(), 0u);
  EXPECT_FALSE((*f)->ReadBlockUnchecked(1, buf.data()));  // not checked in this run: checked now
  EXPECT_FALSE((*f)->Present(1));
  EXPECT_FALSE((*f)->ReadBlockUnchecked(3, buf.data()));  // absent
  EXPECT_FALSE((*f)->ReadBlock(0, buf.data()));  // what the hash's mismatch runs to find it
  EXPECT_EQ((*f)->corrupt_blocks(), 2u);
}

TEST(BlockFileTest, VerifiedFlagPersistsAndDropClearsEverything) {
  TempDir dir;
  std::string data = RandomBytes(kSize, 3);
  {
    auto f = BlockFile::Open(dir.path(), "k", kSize);
    ASSERT_TRUE(f.ok());
    for (uint32_t i = 0; i < 4; i++) ASSERT_TRUE((*f)->WriteBlock(i, data.data() + i * kBlockSize).ok());
    EXPECT_TRUE((*f)->AllPresent());
    ASSERT_TRUE((*f)->MarkVerified().ok());
  }
  {
    auto f = BlockFile::Open(dir.path(), "k", kSize);
    ASSERT_TRUE(f.ok());
    EXPECT_TRUE((*f)->verified());
    (*f)->DropAll();
    EXPECT_FALSE((*f)->verified());
    EXPECT_EQ((*f)->PresentBytes(), 0u);
  }
  auto f = BlockFile::Open(dir.path(), "k", kSize);
  EXPECT_FALSE((*f)->verified());
  EXPECT_FALSE((*f)->Present(2));
}

TEST(BlockFileTest, MismatchedIndexIsReset) {
  TempDir dir;
  std::string data = RandomBytes(kSize, 4);
  {
    auto f = BlockFile::Open(dir.path(), "k", kSize);
    ASSERT_TRUE((*f)->WriteBlock(0, data.data()).ok());
  }
  // Same key opened with another size (a damaged or foreign index): nothing is trusted.
  auto f = BlockFile::Open(dir.path(), "k", kSize + 1);
  ASSERT_TRUE(f.ok());
  EXPECT_FALSE((*f)->Present(0));
  // A truncated index is reset too.
  ASSERT_EQ(truncate((dir.path() + "/k.idx").c_str(), 70), 0);
  auto g = BlockFile::Open(dir.path(), "k", kSize + 1);
  ASSERT_TRUE(g.ok());
  EXPECT_FALSE((*g)->Present(0));
}

TEST(BlockFileTest, TornIndexEntryIsIgnored) {
  TempDir dir;
  std::string data = RandomBytes(kSize, 5);
  {
    auto f = BlockFile::Open(dir.path(), "k", kSize);
    ASSERT_TRUE((*f)->WriteBlock(0, data.data()).ok());
    ASSERT_TRUE((*f)->WriteBlock(1, data.data() + kBlockSize).ok());
  }
  // Simulate a crash that published block 1's entry but never wrote its data.
  int fd = open((dir.path() + "/k.data").c_str(), O_RDWR);
  std::string zeros(kBlockSize, '\0');
  ASSERT_EQ(pwrite(fd, zeros.data(), zeros.size(), kBlockSize), (ssize_t)kBlockSize);
  close(fd);
  auto f = BlockFile::Open(dir.path(), "k", kSize);
  std::vector<char> buf(kBlockSize);
  EXPECT_TRUE((*f)->ReadBlock(0, buf.data()));
  EXPECT_FALSE((*f)->ReadBlock(1, buf.data()));
}

}  // namespace
}  // namespace modelfs

namespace modelfs {
namespace {

// Dropping a blob releases all of its disk space, including a partial last page: the quota's
// accounting counts it as freed.
TEST(BlockFileDropTest, DropAllReleasesEveryAllocatedPage) {
  testing::TempDir dir;
  const uint64_t size = kBlockSize + 5000;  // the last block ends inside a page
  std::string data = testing::RandomBytes(size, 9);
  auto f = BlockFile::Open(dir.path(), "k", size);
  ASSERT_TRUE(f.ok());
  ASSERT_TRUE((*f)->WriteBlock(0, data.data()).ok());
  ASSERT_TRUE((*f)->WriteBlock(1, data.data() + kBlockSize).ok());
  struct stat st;
  ASSERT_EQ(stat((dir.path() + "/k.data").c_str(), &st), 0);
  ASSERT_GT(st.st_blocks, 0);
  (*f)->DropAll();
  ASSERT_EQ(stat((dir.path() + "/k.data").c_str(), &st), 0);
  EXPECT_EQ(st.st_blocks, 0) << "bytes still allocated: " << st.st_blocks * 512;
  EXPECT_EQ(static_cast<uint64_t>(st.st_size), size);
}

// A cache file truncated under the daemon, then extended again by the refetch of a later block,
// holds zeros where its earlier blocks were, and its size no longer tells: once one block was
// found bad, no block is served unchecked (Checked, the splice path's test) until read again.
TEST(BlockFileDropTest, ABlockFoundBadLeavesNoBlockCheckedUnread) {
  testing::TempDir dir;
  const uint64_t size = 3 * kBlockSize;
  std::string data = testing::RandomBytes(size, 11);
  auto f = BlockFile::Open(dir.path(), "k", size);
  ASSERT_TRUE(f.ok());
  for (uint32_t i = 0; i < 3; i++) ASSERT_TRUE((*f)->WriteBlock(i, data.data() + i * kBlockSize).ok());
  ASSERT_TRUE((*f)->Checked(0, 2));
  ASSERT_EQ(truncate((dir.path() + "/k.data").c_str(), 0), 0);
  std::vector<char> buf(kBlockSize);
  EXPECT_FALSE((*f)->ReadBlock(2, buf.data()));  // past the new end: unreadable
  ASSERT_TRUE((*f)->WriteBlock(2, data.data() + 2 * kBlockSize).ok());  // the refetch: size is 3 blocks again
  EXPECT_TRUE((*f)->Checked(2, 2));
  EXPECT_FALSE((*f)->Checked(0, 0)) << "block 0 is a hole of zeros now, and still trusted";
  EXPECT_FALSE((*f)->ReadBlock(0, buf.data()));  // read whole, it fails its checksum: a miss
  EXPECT_FALSE((*f)->Present(0));
}

// A write that fails part way (here EFBIG past RLIMIT_FSIZE; ENOSPC from a full disk alike) has
// allocated pages already, and the store gives the block's charge back: the block is absent and
// none of its pages stay on disk outside the quota.
TEST(BlockFileDropTest, AFailedWriteLeavesNoPageBehind) {
  testing::TempDir dir;
  const uint64_t size = 3 * kBlockSize;
  std::string data = testing::RandomBytes(size, 10);
  auto f = BlockFile::Open(dir.path(), "k", size);
  ASSERT_TRUE(f.ok());
  struct rlimit old;
  ASSERT_EQ(getrlimit(RLIMIT_FSIZE, &old), 0);
  struct rlimit lim = old;
  lim.rlim_cur = 2 * kBlockSize + kBlockSize / 2;  // block 2 is written half, then EFBIG
  void (*old_handler)(int) = signal(SIGXFSZ, SIG_IGN);  // (its default ends the process)
  ASSERT_EQ(setrlimit(RLIMIT_FSIZE, &lim), 0);
  Status s = (*f)->WriteBlock(2, data.data() + 2 * kBlockSize);
  setrlimit(RLIMIT_FSIZE, &old);
  signal(SIGXFSZ, old_handler);
  EXPECT_FALSE(s.ok());
  EXPECT_FALSE((*f)->Present(2));
  struct stat st;
  ASSERT_EQ(stat((dir.path() + "/k.data").c_str(), &st), 0);
  EXPECT_EQ(st.st_blocks, 0) << "bytes of the failed write still allocated: " << st.st_blocks * 512;
  // The block is written whole once the write can succeed.
  ASSERT_TRUE((*f)->WriteBlock(2, data.data() + 2 * kBlockSize).ok());
  std::vector<char> buf(kBlockSize);
  ASSERT_TRUE((*f)->ReadBlock(2, buf.data()));
  EXPECT_EQ(0, memcmp(buf.data(), data.data() + 2 * kBlockSize, kBlockSize));
}

}  // namespace
}  // namespace modelfs
