#include "cache/hash.h"

#include <gtest/gtest.h>

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

}  // namespace
}  // namespace modelfs
