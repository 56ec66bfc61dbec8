// End-to-end mirrors and security: the real binary mounted over two fake hubs serving the same
// repo. A dead or failing first mirror never reaches the reader; the token goes to both endpoints
// and to no CDN, log or cache file; the cache is private to the user; the mount is read-only and
// not shared with other users unless asked; `modelfs config show` reports the layers.
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "tests/integration/mount_helper.h"
#include "tests/testing/fake_hub_process.h"
#include "tests/testing/temp_dir.h"

namespace modelfs::testing {
namespace {

constexpr const char* kRepo = "acme/mirrored";
constexpr const char* kToken = "hf_mirror_secret_token_42";

std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

FakeHubOptions Hub() {
  FakeHubOptions o;
  o.repos[0].repo = kRepo;
  o.repos[0].total_size = 12 << 20;
  o.repos[0].shards = 2;
  o.hub_args = {"--token", kToken};
  return o;
}

// Every file of the head commit, read through the mount, equals the source.
void ExpectAllFilesMatch(const FakeHubProcess& hub, const std::string& root) {
  const std::string commit = hub.CommitOf("main", kRepo);
  int n = 0;
  for (const auto& f : hub.manifest(kRepo)["commits"][commit]["files"]) {
    const std::string p = f["path"].get<std::string>();
    EXPECT_EQ(ReadFile(root + "/" + p), hub.Content(commit, p, kRepo)) << p;
    ++n;
  }
  EXPECT_GT(n, 5);
}

class MirrorsMountTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    a_ = new FakeHubProcess(Hub());
    b_ = new FakeHubProcess(Hub());
  }
  static void TearDownTestSuite() {
    delete a_;
    delete b_;
    a_ = b_ = nullptr;
  }
  void SetUp() override {
    ASSERT_TRUE(a_->ok() && b_->ok());
    for (FakeHubProcess* h : {a_, b_}) {
      h->ClearFaults();
      h->ClearLog();
      h->ClearStats();
    }
  }
  static FakeHubProcess *a_, *b_;
  TempDir dir_;
};
FakeHubProcess* MirrorsMountTest::a_ = nullptr;
FakeHubProcess* MirrorsMountTest::b_ = nullptr;

TEST_F(MirrorsMountTest, DeadFirstMirrorIsInvisibleToReaders) {
  MountSpec spec;
  spec.endpoint = "http://127.0.0.1:1";  // nothing listens on port 1
  spec.extra = {"--endpoint", b_->endpoint()};
  spec.cache_dir = dir_.Sub("cache");
  spec.repo = kRepo;
  spec.env = {std::string("HF_TOKEN=") + kToken};
  MountedFs m(spec);
  ASSERT_TRUE(m.mounted()) << m.Log();
  ExpectAllFilesMatch(*b_, m.path());
  EXPECT_NE(m.Log().find("127.0.0.1:1"), std::string::npos);  // the failover was logged
}

TEST_F(MirrorsMountTest, MirrorFailingMidWayFailsOverAndTokenStaysHome) {
  MountSpec spec;
  spec.endpoint = a_->endpoint();
  spec.extra = {"--endpoint", b_->endpoint()};
  spec.cache_dir = dir_.Sub("cache");
  spec.env = {std::string("HF_TOKEN=") + kToken};
  MountedFs m(spec);
  ASSERT_TRUE(m.mounted()) << m.Log();
  const std::string root = m.path() + "/" + kRepo;
  // A serves the listing, then every CDN transfer from A fails.
  ASSERT_TRUE(std::filesystem::exists(root + "/config.json"));
  ASSERT_TRUE(a_->SetFaults({{"where", "cdn"}, {"error_rate", 1.0}}));
  ExpectAllFilesMatch(*a_, root);
  EXPECT_GT(b_->Stats()["requests"]["cdn"].get<int>(), 0);
  // Token: sent to both endpoints, never to a CDN.
  for (FakeHubProcess* h : {a_, b_}) {
    EXPECT_EQ(h->Stats()["auth_to_cdn"], 0);
    for (const auto& r : h->Log()) {
      if (r["listener"] == "hub") {
        EXPECT_TRUE(r["auth"].get<bool>()) << r.dump();
      }
    }
  }
  m.Unmount();
  // Never in the log or in any cache file; cache files 0600, directories 0700.
  EXPECT_EQ(m.Log().find(kToken), std::string::npos);
  int files = 0;
  for (const auto& e : std::filesystem::recursive_directory_iterator(spec.cache_dir)) {
    struct stat st;
    ASSERT_EQ(lstat(e.path().c_str(), &st), 0);
    if (S_ISDIR(st.st_mode)) {
      EXPECT_EQ(st.st_mode & 0777, 0700u) << e.path();
    } else if (S_ISREG(st.st_mode)) {
      EXPECT_EQ(st.st_mode & 0077, 0u) << e.path() << " is readable by others";
      EXPECT_EQ(ReadFile(e.path()).find(kToken), std::string::npos) << e.path();
      ++files;
    }
  }
  struct stat st;
  ASSERT_EQ(stat(spec.cache_dir.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0700u);
  EXPECT_GT(files, 0);
}

// --verify-before-read: with one mirror flipping a byte in every body of a shard (larger than one
// chunk), every byte a reader gets through the mount is right; the bad mirror is blamed and the
// file refilled from the other. With only the bad mirror, reads fail (EIO) and return nothing.
TEST_F(MirrorsMountTest, VerifyBeforeReadServesOnlyVerifiedBytesWhenAMirrorCorrupts) {
  const std::string commit = b_->CommitOf("main", kRepo);
  std::string shard;
  for (const auto& f : b_->manifest(kRepo)["commits"][commit]["files"]) {
    if (f["size"].get<uint64_t>() > (4u << 20)) shard = f["path"];
  }
  ASSERT_FALSE(shard.empty());
  const std::string want = b_->Content(commit, shard, kRepo);
  ASSERT_TRUE(b_->SetFaults({{"where", "cdn"}, {"corrupt_paths", {shard}}}));
  {
    MountSpec spec;
    // The corrupting mirror first, and asked first: with "fastest", the mount's warm-up ranks
    // the two by their round trips, and on loopback either may win.
    spec.endpoint = b_->endpoint();
    spec.extra = {"--endpoint", a_->endpoint(), "--verify-before-read", "--endpoint-policy", "ordered"};
    spec.cache_dir = dir_.Sub("cache");
    spec.env = {std::string("HF_TOKEN=") + kToken};
    MountedFs m(spec);
    ASSERT_TRUE(m.mounted()) << m.Log();
    const std::string path = m.path() + "/" + kRepo + "/" + shard;
    // First read: a small one at the end of the file, then the whole file.
    int fd = open(path.c_str(), O_RDONLY);
    ASSERT_GE(fd, 0);
    char tail[100];
    ASSERT_EQ(pread(fd, tail, sizeof tail, static_cast<off_t>(want.size() - sizeof tail)), 100) << m.Log();
    close(fd);
    EXPECT_EQ(std::string(tail, 100), want.substr(want.size() - 100));
    EXPECT_EQ(ReadFile(path), want);
    EXPECT_NE(m.Log().find("hash mismatch"), std::string::npos) << m.Log();
    EXPECT_GT(b_->Stats()["requests"]["cdn"].get<int>(), 0) << "the bad mirror was never asked";
  }
  {
    MountSpec spec;
    spec.endpoint = b_->endpoint();  // only the corrupting mirror
    spec.extra = {"--verify-before-read"};
    spec.cache_dir = dir_.Sub("cache2");
    spec.env = {std::string("HF_TOKEN=") + kToken};
    MountedFs m(spec);
    ASSERT_TRUE(m.mounted()) << m.Log();
    int fd = open((m.path() + "/" + kRepo + "/" + shard).c_str(), O_RDONLY);
    ASSERT_GE(fd, 0);
    std::string buf(1 << 20, '\0');
    errno = 0;
    EXPECT_EQ(pread(fd, buf.data(), buf.size(), 0), -1);
    EXPECT_EQ(errno, EIO);
    close(fd);
    EXPECT_NE(m.Log().find("failed its hash 4 times"), std::string::npos) << m.Log();
  }
}

TEST_F(MirrorsMountTest, ReadOnlyAndNotSharedByDefault) {
  MountSpec spec;
  spec.endpoint = a_->endpoint();
  spec.cache_dir = dir_.Sub("cache");
  spec.repo = kRepo;
  MountedFs m(spec);
  ASSERT_TRUE(m.mounted()) << m.Log();
  std::ifstream in("/proc/self/mounts");
  std::string line, opts;
  while (std::getline(in, line)) {
    std::istringstream ss(line);
    std::string dev, mp, type, o;
    ss >> dev >> mp >> type >> o;
    if (mp == m.path()) opts = o;
  }
  ASSERT_FALSE(opts.empty());
  EXPECT_EQ(opts.find("allow_other"), std::string::npos) << opts;
  int fd = open((m.path() + "/config.json").c_str(), O_WRONLY);
  EXPECT_LT(fd, 0);
  EXPECT_EQ(errno, EROFS);
  if (fd >= 0) close(fd);
  EXPECT_NE(mkdir((m.path() + "/newdir").c_str(), 0755), 0);
}

TEST(MirrorsConfigTest, ConfigShowReportsLayers) {
  TempDir dir;
  const std::string sys = dir.Sub("system.conf");
  std::ofstream(sys) << "endpoint = http://sys-mirror:8080\nendpoint = https://huggingface.co\nmirror-retry = 90\n";
  const std::string cmd = "env -u HF_ENDPOINT -u MODELFS_MIRRORS MODELFS_SYSTEM_CONFIG=" + sys +
                          " MODELFS_CONFIG=" + dir.Sub("none.conf") + " " + MODELFS_BINARY + " config show";
  FILE* p = popen(cmd.c_str(), "r");
  ASSERT_NE(p, nullptr);
  std::string out;
  char buf[4096];
  for (size_t n; (n = fread(buf, 1, sizeof buf, p)) > 0;) out.append(buf, n);
  EXPECT_EQ(pclose(p), 0) << out;
  EXPECT_NE(out.find("http://sys-mirror:8080    [" + sys + ":1]"), std::string::npos) << out;
  EXPECT_NE(out.find("https://huggingface.co    [" + sys + ":2]"), std::string::npos) << out;
  EXPECT_NE(out.find("mirror-retry = 90    [" + sys + ":3]"), std::string::npos) << out;
}

}  // namespace
}  // namespace modelfs::testing
