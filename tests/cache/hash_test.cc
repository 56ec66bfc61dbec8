#include "cache/hash.h"

#include <gtest/gtest.h>
#include <xxhash.h>

#include <random>
#include <string>
#include <vector>

namespace modelfs {
namespace {

TEST(HashTest, Sha256KnownVector) {
  EXPECT_EQ(HashHex(HashKind::kSha256, "abc", 3),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
}

TEST(HashTest, GitBlobIdMatchesGit) {
  // `printf 'hello\n' | git hash-object --stdin`
  EXPECT_EQ(HashHex(HashKind::kGitSha1, "hello\n", 6), "ce013625030ba8dba906f756967f9e9ca394464a");
  // The empty blob.
  EXPECT_EQ(HashHex(HashKind::kGitSha1, "", 0), "e69de29bb2d1d6434b8b29ae775ad8c2e48c5391");
}

TEST(HashTest, StreamingEqualsOneShot) {
  std::string data(3 << 20, 'x');
  for (size_t i = 0; i < data.size(); i++) data[i] = static_cast<char>(i * 7);
  FileHasher h(HashKind::kSha256, data.size());
  h.Update(data.data(), 1000);
  h.Update(data.data() + 1000, data.size() - 1000);
  EXPECT_EQ(h.FinishHex(), HashHex(HashKind::kSha256, data.data(), data.size()));
}

TEST(HashTest, BlockChecksumNeverZeroAndSensitive) {
  std::string a(4096, 'a'), b = a;
  b[100] = 'b';
  EXPECT_NE(BlockChecksum(a.data(), a.size()), 0u);
  EXPECT_NE(BlockChecksum(a.data(), a.size()), BlockChecksum(b.data(), b.size()));
}

// Block indexes written by any build must read back in any other: the AVX2 build of XXH3
// (cache/xxh3_avx2.cc, picked where the CPU has it) gives the library's digest at every length
// and alignment (XXH3 takes other code paths at 16, 128, 240 bytes and per stripe and block).
TEST(HashTest, BlockChecksumIsTheLibrarysXxh3AtEveryLengthAndAlignment) {
  std::mt19937_64 rng(42);
  std::string data((1 << 20) + 64, '\0');
  for (char& c : data) c = static_cast<char>(rng());
  std::vector<size_t> lens;
  for (size_t n = 0; n <= 1100; n++) lens.push_back(n);
  for (size_t n : {4095u, 4096u, 65537u, 1u << 20}) lens.push_back(n);
  for (size_t align = 0; align < 3; align++) {
    for (size_t n : lens) {
      const char* p = data.data() + align;
      uint64_t want = XXH3_64bits(p, n);
      if (want == 0) want = 1;
      ASSERT_EQ(BlockChecksum(p, n), want) << "length " << n << ", offset " << align;
    }
  }
}

}  // namespace
}  // namespace modelfs
