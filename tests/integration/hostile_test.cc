// End-to-end against the fake hub in hostile mode (tests/testing/fake_hub.py "hostile"): through a
// real mount, a hostile listing or transfer gives the reader an error, within the configured
// timeouts; the daemon stays up and serves correctly once the hub behaves; nothing is written
// outside the cache directory; wrong bytes never reach the reader.
#include <errno.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>

#include "tests/integration/mount_helper.h"
#include "tests/testing/fake_hub_process.h"
#include "tests/testing/temp_dir.h"

namespace modelfs::testing {
namespace {

using Clock = std::chrono::steady_clock;

// Reads the whole file; returns errno of the first failure (0 on success).
int ReadWhole(const std::string& path, std::string* out) {
  int fd = open(path.c_str(), O_RDONLY);
  if (fd < 0) return errno;
  std::vector<char> buf(1 << 20);
  for (;;) {
    ssize_t n = read(fd, buf.data(), buf.size());
    if (n < 0) {
      int e = errno;
      close(fd);
      return e;
    }
    if (n == 0) break;
    out->append(buf.data(), static_cast<size_t>(n));
  }
  close(fd);
  return 0;
}

class HostileMountTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    FakeHubOptions o;
    o.repos[0].repo = "acme/tiny";
    o.repos[0].total_size = 8 << 20;
    o.repos[0].shards = 1;
    o.repos.push_back(o.repos[0]);
    o.repos[1].repo = "acme/other";
    hub_ = new FakeHubProcess(o);
  }
  static void TearDownTestSuite() {
    delete hub_;
    hub_ = nullptr;
  }
  void SetUp() override {
    ASSERT_TRUE(hub_->ok());
    ASSERT_TRUE(hub_->SetConfig({{"hostile", ""}}));
    unlink("/tmp/modelfs-hostile-escape");
  }
  void TearDown() override { hub_->SetConfig({{"hostile", ""}}); }
  std::string Shard(const std::string& repo) {
    for (const auto& f : hub_->manifest(repo)["commits"][hub_->CommitOf("main", repo)]["files"])
      if (f.value("lfs", false)) return f["path"].get<std::string>();
    return "";
  }
  static FakeHubProcess* hub_;
  TempDir dir_;
};
FakeHubProcess* HostileMountTest::hub_ = nullptr;

TEST_F(HostileMountTest, HostileListingsFailTheRepoNotTheDaemon) {
  MountSpec spec;
  spec.endpoint = hub_->endpoint();
  spec.cache_dir = dir_.Sub("cache");
  MountedFs m(spec);
  ASSERT_TRUE(m.mounted()) << m.Log();
  for (const char* c : {"tree_dotdot", "tree_absolute", "tree_file_and_dir", "tree_huge_size", "json_deep",
                        "json_huge"}) {
    ASSERT_TRUE(hub_->SetConfig({{"hostile", c}}));
    auto t0 = Clock::now();
    struct stat st;
    int rc = stat(m.Path("acme/tiny/config.json").c_str(), &st);
    EXPECT_NE(rc, 0) << c;
    EXPECT_LT(std::chrono::duration<double>(Clock::now() - t0).count(), 30.0) << c;
  }
  // Nothing escaped the cache directory.
  struct stat st;
  EXPECT_NE(stat("/tmp/modelfs-hostile-escape", &st), 0);
  // The daemon is alive and serves a repo once the hub behaves.
  ASSERT_TRUE(hub_->SetConfig({{"hostile", ""}}));
  std::string got;
  const std::string commit = hub_->CommitOf("main", "acme/other");
  ASSERT_EQ(ReadWhole(m.Path("acme/other/config.json"), &got), 0) << m.Log();
  EXPECT_EQ(got, hub_->Content(commit, "config.json", "acme/other"));
  for (const auto& e : std::filesystem::recursive_directory_iterator(dir_.path())) {
    std::string p = e.path().string();
    EXPECT_TRUE(p.rfind(spec.cache_dir, 0) == 0 || p.rfind(m.path(), 0) == 0 || p == dir_.Sub("mnt") ||
                p.find("modelfs.log") != std::string::npos)
        << p;
  }
}

TEST_F(HostileMountTest, HostileTransfersNeverServeWrongBytesOrHang) {
  const std::string shard = Shard("acme/tiny");
  const std::string want = hub_->Content(hub_->CommitOf("main", "acme/tiny"), shard, "acme/tiny");
  // A fresh mount and cache per case: a resolved CDN URL or cached block from the previous case
  // would (rightly) bypass the next misbehaviour.
  for (const char* c : {"wrong_content_range", "size_mismatch", "body_long", "body_short", "redirect_file",
                        "redirect_loop", "trickle", "full_200"}) {
    ASSERT_TRUE(hub_->SetConfig({{"hostile", ""}}));
    MountSpec spec;
    spec.endpoint = hub_->endpoint();
    spec.cache_dir = dir_.Sub(std::string("cache-") + c);
    spec.repo = "acme/tiny";
    MountedFs m(spec);  // --stall-timeout 3 --retries 2 (mount_helper.h)
    ASSERT_TRUE(m.mounted()) << m.Log();
    ASSERT_TRUE(hub_->SetConfig({{"hostile", c}}));
    auto t0 = Clock::now();
    std::string got;
    int err = ReadWhole(m.Path(shard), &got);
    double secs = std::chrono::duration<double>(Clock::now() - t0).count();
    if (std::string(c) == "full_200") {
      // Legal: a 200 with the whole file to a Range request; the right bytes come out.
      EXPECT_EQ(err, 0) << m.Log();
      EXPECT_TRUE(got == want) << c;
    } else {
      EXPECT_NE(err, 0) << c;
      // Whatever prefix the reader got before the error is right.
      EXPECT_TRUE(got == want.substr(0, got.size())) << c;
    }
    // trickle: 3 attempts cut by a 3 s stall each, plus backoff: well under a minute.
    EXPECT_LT(secs, 60.0) << c;
    ASSERT_TRUE(hub_->SetConfig({{"hostile", ""}}));
    // The daemon is still up and serves the file once the hub behaves.
    std::string again;
    EXPECT_EQ(ReadWhole(m.Path("config.json"), &again), 0) << c << "\n" << m.Log();
  }
}

}  // namespace
}  // namespace modelfs::testing
