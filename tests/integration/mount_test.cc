// End-to-end: the real modelfs binary, a real FUSE mount, the fake hub over loopback, real files.
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <random>
#include <set>

#include "tests/integration/mount_helper.h"
#include "tests/testing/fake_hub_process.h"
#include "tests/testing/temp_dir.h"

namespace modelfs::testing {
namespace {

constexpr const char* kRepo = "acme/tiny";
constexpr const char* kToken = "hf_integration_secret_token";

std::string ReadAll(const std::string& path, int* err = nullptr) {
  int fd = open(path.c_str(), O_RDONLY);
  if (fd < 0) {
    if (err) *err = errno;
    return "";
  }
  std::string out;
  std::vector<char> buf(1 << 20);
  for (;;) {
    ssize_t n = read(fd, buf.data(), buf.size());
    if (n < 0) {
      if (err) *err = errno;
      break;
    }
    if (n == 0) break;
    out.append(buf.data(), static_cast<size_t>(n));
  }
  close(fd);
  return out;
}

int ErrnoOfOpen(const std::string& path, int flags = O_RDONLY) {
  int fd = open(path.c_str(), flags, 0644);
  if (fd >= 0) {
    close(fd);
    return 0;
  }
  return errno;
}

class MountTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    FakeHubOptions o;
    FakeRepoSpec tiny;
    tiny.repo = kRepo;
    tiny.total_size = 24 << 20;
    tiny.shards = 3;
    tiny.extra_revision = true;
    FakeRepoSpec secret;
    secret.repo = "acme/secret";
    secret.total_size = 6 << 20;
    secret.shards = 1;
    secret.is_private = true;
    o.repos = {tiny, secret};
    o.hub_args = {"--token", kToken, "--small-mode", "redirect", "--page-size", "3"};
    hub_ = new FakeHubProcess(o);
  }
  static void TearDownTestSuite() {
    delete hub_;
    hub_ = nullptr;
  }
  void SetUp() override {
    ASSERT_TRUE(hub_->ok()) << hub_->ServerOutput();
    hub_->ClearFaults();
    hub_->ClearLog();
  }

  MountSpec Spec() {
    MountSpec s;
    s.endpoint = hub_->endpoint();
    s.cache_dir = cache_.path();
    return s;
  }
  std::string Head() { return hub_->CommitOf("main", kRepo); }
  std::vector<nlohmann::json> HeadFiles() {
    std::vector<nlohmann::json> out;
    for (auto& f : hub_->manifest(kRepo)["commits"][Head()]["files"]) out.push_back(f);
    return out;
  }
  std::string LargestShard() {
    std::string best;
    uint64_t size = 0;
    for (auto& f : HeadFiles())
      if (f["size"].get<uint64_t>() > size) {
        size = f["size"];
        best = f["path"];
      }
    return best;
  }
  std::string CacheDataPath(const std::string& sha256) {
    return cache_.path() + "/blobs/" + sha256.substr(0, 2) + "/sha256-" + sha256 + ".data";
  }

  static FakeHubProcess* hub_;
  TempDir cache_{"modelfs-cache"};
};
FakeHubProcess* MountTest::hub_ = nullptr;

TEST_F(MountTest, ListsTheTreeAndReadsEveryFileByteExact) {
  MountedFs m(Spec());
  ASSERT_TRUE(m.mounted()) << m.Log();
  std::string root = m.Path(kRepo);
  // ls -R equals the manifest: every file, and every directory implied by a path.
  std::set<std::string> want, got;
  for (auto& f : HeadFiles()) {
    std::string p = f["path"];
    want.insert(p);
    for (size_t s = p.find('/'); s != std::string::npos; s = p.find('/', s + 1)) want.insert(p.substr(0, s) + "/");
  }
  for (auto& e : std::filesystem::recursive_directory_iterator(root)) {
    std::string rel = e.path().string().substr(root.size() + 1);
    got.insert(e.is_directory() ? rel + "/" : rel);
  }
  EXPECT_EQ(got, want);
  for (auto& f : HeadFiles()) {
    std::string p = f["path"];
    struct stat st;
    ASSERT_EQ(stat((root + "/" + p).c_str(), &st), 0) << p;
    EXPECT_EQ(static_cast<uint64_t>(st.st_size), f["size"].get<uint64_t>()) << p;
    EXPECT_EQ(st.st_mode & 0777, 0444u) << p;
    EXPECT_TRUE(ReadAll(root + "/" + p) == hub_->Content(Head(), p, kRepo)) << p;
  }
  // The repo listing is visible in the org directory and the org in the root.
  EXPECT_TRUE(std::filesystem::exists(m.Path("acme")));
}

TEST_F(MountTest, RandomOffsetsBlockBoundariesAndEof) {
  MountedFs m(Spec());
  ASSERT_TRUE(m.mounted()) << m.Log();
  std::string shard = LargestShard();
  std::string want = hub_->Content(Head(), shard, kRepo);
  int fd = open(m.Path(std::string(kRepo) + "/" + shard).c_str(), O_RDONLY);
  ASSERT_GE(fd, 0);
  std::mt19937_64 rng(7);
  std::vector<std::pair<uint64_t, size_t>> cases = {
      {0, 8}, {(1 << 20) - 5, 10}, {(4 << 20) - 1, 2}, {(4 << 20) - 100, (1 << 20) + 200},
      {want.size() - 1, 1}, {want.size() - 7, 4096}};
  for (int i = 0; i < 40; i++) cases.emplace_back(rng() % want.size(), 1 + rng() % (3 << 20));
  std::vector<char> buf(4 << 20);
  for (auto [off, len] : cases) {
    ssize_t n = pread(fd, buf.data(), len, static_cast<off_t>(off));
    size_t expect = std::min<uint64_t>(len, want.size() - off);
    ASSERT_EQ(n, static_cast<ssize_t>(expect)) << off << "+" << len;
    ASSERT_EQ(0, memcmp(buf.data(), want.data() + off, expect)) << off << "+" << len;
  }
  EXPECT_EQ(pread(fd, buf.data(), 100, static_cast<off_t>(want.size())), 0);
  EXPECT_EQ(pread(fd, buf.data(), 100, static_cast<off_t>(want.size() + 12345)), 0);
  close(fd);
  // A zero-length file.
  struct stat st;
  ASSERT_EQ(stat(m.Path(std::string(kRepo) + "/empty.txt").c_str(), &st), 0);
  EXPECT_EQ(st.st_size, 0);
  EXPECT_EQ(ReadAll(m.Path(std::string(kRepo) + "/empty.txt")), "");
}

TEST_F(MountTest, MmapOfAShardMatches) {
  MountedFs m(Spec());
  ASSERT_TRUE(m.mounted()) << m.Log();
  std::string shard = LargestShard();
  std::string want = hub_->Content(Head(), shard, kRepo);
  int fd = open(m.Path(std::string(kRepo) + "/" + shard).c_str(), O_RDONLY);
  ASSERT_GE(fd, 0);
  void* p = mmap(nullptr, want.size(), PROT_READ, MAP_PRIVATE, fd, 0);
  ASSERT_NE(p, MAP_FAILED) << strerror(errno);
  const char* c = static_cast<const char*>(p);
  // Touch pages out of order first (as a loader building tensors in random order does).
  std::mt19937 rng(3);
  for (int i = 0; i < 64; i++) {
    size_t off = rng() % want.size();
    ASSERT_EQ(c[off], want[off]) << off;
  }
  EXPECT_EQ(0, memcmp(c, want.data(), want.size()));
  munmap(p, want.size());
  close(fd);
}

TEST_F(MountTest, RevisionsBranchTagCommitAndPrRef) {
  MountedFs m(Spec());
  ASSERT_TRUE(m.mounted()) << m.Log();
  std::string v1 = hub_->CommitOf("v1.0", kRepo);
  ASSERT_FALSE(v1.empty());
  EXPECT_EQ(ReadAll(m.Path(std::string(kRepo) + "@v1.0/config.json")), hub_->Content(v1, "config.json", kRepo));
  EXPECT_EQ(ReadAll(m.Path(std::string(kRepo) + "@" + v1 + "/config.json")), hub_->Content(v1, "config.json", kRepo));
  EXPECT_NE(hub_->Content(v1, "config.json", kRepo), hub_->Content(Head(), "config.json", kRepo));
  EXPECT_EQ(ErrnoOfOpen(m.Path(std::string(kRepo) + "@v1.0/generation_config.json")), ENOENT);
  EXPECT_EQ(ReadAll(m.Path(std::string(kRepo) + "@refs%2Fpr%2F1/config.json")),
            hub_->Content(Head(), "config.json", kRepo));
  // Shards are shared between revisions: one copy in the cache.
  std::string shard = LargestShard();
  EXPECT_EQ(ReadAll(m.Path(std::string(kRepo) + "@v1.0/" + shard)), ReadAll(m.Path(std::string(kRepo) + "/" + shard)));
}

TEST_F(MountTest, UnknownRepoFileAndRevisionAreEnoent) {
  MountedFs m(Spec());
  ASSERT_TRUE(m.mounted()) << m.Log();
  struct stat st;
  EXPECT_EQ(stat(m.Path("acme/no-such-model").c_str(), &st), -1);
  EXPECT_EQ(errno, ENOENT);
  EXPECT_EQ(stat(m.Path(std::string(kRepo) + "@no-such-branch").c_str(), &st), -1);
  EXPECT_EQ(errno, ENOENT);
  EXPECT_EQ(stat(m.Path(std::string(kRepo) + "/no-such-file.bin").c_str(), &st), -1);
  EXPECT_EQ(errno, ENOENT);
  EXPECT_EQ(stat(m.Path("bad..name/x").c_str(), &st), -1);
}

TEST_F(MountTest, WritesAreReadOnlyFilesystem) {
  MountedFs m(Spec());
  ASSERT_TRUE(m.mounted()) << m.Log();
  std::string root = m.Path(kRepo);
  ASSERT_EQ(ErrnoOfOpen(root + "/config.json"), 0);
  EXPECT_EQ(ErrnoOfOpen(root + "/config.json", O_WRONLY), EROFS);
  EXPECT_EQ(ErrnoOfOpen(root + "/config.json", O_RDWR), EROFS);
  EXPECT_EQ(ErrnoOfOpen(root + "/new.txt", O_WRONLY | O_CREAT), EROFS);
  EXPECT_EQ(mkdir((root + "/d").c_str(), 0755), -1);
  EXPECT_EQ(errno, EROFS);
  EXPECT_EQ(unlink((root + "/config.json").c_str()), -1);
  EXPECT_EQ(errno, EROFS);
}

TEST_F(MountTest, SecondMountIsServedFromCacheWithHubStopped) {
  std::map<std::string, std::string> first;
  {
    MountedFs m(Spec());
    ASSERT_TRUE(m.mounted()) << m.Log();
    for (auto& f : HeadFiles()) first[f["path"]] = ReadAll(m.Path(std::string(kRepo) + "/" + f["path"].get<std::string>()));
  }
  // A separate hub so that stopping it does not affect other tests.
  FakeHubOptions o;
  FakeRepoSpec r;
  r.repo = kRepo;
  r.total_size = 24 << 20;
  r.shards = 3;
  r.extra_revision = true;
  o.repos = {r};
  FakeHubProcess hub2(o);
  ASSERT_TRUE(hub2.ok());
  TempDir cache2("modelfs-cache");
  MountSpec s = Spec();
  s.endpoint = hub2.endpoint();
  s.cache_dir = cache2.path();
  {
    MountedFs m(s);
    ASSERT_TRUE(m.mounted()) << m.Log();
    for (auto& [p, c] : first) ASSERT_EQ(ReadAll(m.Path(std::string(kRepo) + "/" + p)), c) << p;
  }
  std::string endpoint = hub2.endpoint();
  hub2.Stop();
  MountedFs m(s);
  ASSERT_TRUE(m.mounted()) << m.Log();
  for (auto& [p, c] : first) {
    int err = 0;
    EXPECT_TRUE(ReadAll(m.Path(std::string(kRepo) + "/" + p), &err) == c) << p << " errno " << err;
  }
  // A revision never resolved before cannot be served offline.
  struct stat st;
  EXPECT_EQ(stat(m.Path(std::string(kRepo) + "@v1.0").c_str(), &st), -1);
}

TEST_F(MountTest, CorruptedCacheBlockIsDetectedAndRefetched) {
  std::string shard = LargestShard();
  std::string sha = (*hub_->FileAt(Head(), shard, kRepo))["sha256"];
  std::string want = hub_->Content(Head(), shard, kRepo);
  {
    MountedFs m(Spec());
    ASSERT_TRUE(m.mounted()) << m.Log();
    ASSERT_TRUE(ReadAll(m.Path(std::string(kRepo) + "/" + shard)) == want);
  }
  // Damage the cached copy of block 2 (bytes in the chunk at 0..4 MiB).
  int fd = open(CacheDataPath(sha).c_str(), O_RDWR);
  ASSERT_GE(fd, 0);
  char junk[64];
  memset(junk, 0x42, sizeof junk);
  ASSERT_EQ(pwrite(fd, junk, sizeof junk, (2 << 20) + 100), (ssize_t)sizeof junk);
  close(fd);
  hub_->ClearLog();
  MountedFs m(Spec());
  ASSERT_TRUE(m.mounted()) << m.Log();
  EXPECT_TRUE(ReadAll(m.Path(std::string(kRepo) + "/" + shard)) == want);
  // Only the damaged block of this shard went over the network again (a whole-file read also
  // fetches the next shard ahead: those requests are not this shard's).
  int cdn_gets = 0;
  for (auto& r : hub_->Log())
    if (r["listener"] == "cdn" && r["method"] == "GET" && r.value("repo_path", "").find(shard) != std::string::npos) {
      cdn_gets++;
      EXPECT_EQ(r["range"], "bytes=2097152-3145727");
    }
  EXPECT_EQ(cdn_gets, 1);
}

TEST_F(MountTest, MirrorServingWrongBytesIsCaughtBySha256) {
  std::string shard = LargestShard();
  std::string sha = (*hub_->FileAt(Head(), shard, kRepo))["sha256"];
  std::string want = hub_->Content(Head(), shard, kRepo);
  ASSERT_TRUE(hub_->SetFaults({{"corrupt_paths", {shard}}, {"where", "cdn"}}));
  {
    MountedFs m(Spec());
    ASSERT_TRUE(m.mounted()) << m.Log();
    // The whole-file hash runs as bytes arrive; the read that reaches the end waits for it, so a
    // reader of the whole file gets an error, never all of it and a clean EOF.
    int read_err = 0;
    std::string got = ReadAll(m.Path(std::string(kRepo) + "/" + shard), &read_err);
    EXPECT_EQ(read_err, EIO);
    EXPECT_LT(got.size(), want.size());
    bool caught = false;
    for (int i = 0; i < 200 && !caught; i++) {
      caught = m.Log().find("hash mismatch") != std::string::npos;
      if (!caught) std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    EXPECT_TRUE(caught) << m.Log();
    EXPECT_NE(m.Log().find("127.0.0.1:" + std::to_string(hub_->cdn_port())), std::string::npos)
        << "the log names the mirror that served the bad bytes:\n" << m.Log();
    // A small file served wrong is never returned: the read fails instead.
    ASSERT_TRUE(hub_->SetFaults({{"corrupt_paths", {"config.json"}}, {"where", "both"}}));
    int err = 0;
    std::string cfg = ReadAll(m.Path(std::string(kRepo) + "/config.json"), &err);
    EXPECT_EQ(err, EIO);
    EXPECT_NE(cfg, "x");
  }
  // The bad blocks were dropped: with an honest mirror, a new mount reads the right bytes.
  ASSERT_TRUE(hub_->ClearFaults());
  MountedFs m(Spec());
  ASSERT_TRUE(m.mounted()) << m.Log();
  std::string again = ReadAll(m.Path(std::string(kRepo) + "/" + shard));
  size_t diff = 0;
  while (diff < again.size() && diff < want.size() && again[diff] == want[diff]) diff++;
  EXPECT_TRUE(again == want) << "first difference at " << diff << " of " << want.size() << "\n" << m.Log();
  EXPECT_EQ(ReadAll(m.Path(std::string(kRepo) + "/config.json")), hub_->Content(Head(), "config.json", kRepo));
}

TEST_F(MountTest, TokenReachesTheHubButNeverTheCdn) {
  MountSpec s = Spec();
  s.env = {std::string("HF_TOKEN=") + kToken};
  MountedFs m(s);
  ASSERT_TRUE(m.mounted()) << m.Log();
  std::string commit = hub_->CommitOf("main", "acme/secret");
  for (auto& f : hub_->manifest("acme/secret")["commits"][commit]["files"]) {
    std::string p = f["path"];
    EXPECT_TRUE(ReadAll(m.Path("acme/secret/" + p)) == hub_->Content(commit, p, "acme/secret")) << p;
  }
  int hub_auth = 0, cdn = 0;
  for (auto& r : hub_->Log()) {
    if (r["listener"] == "cdn") {
      cdn++;
      EXPECT_FALSE(r["auth"].get<bool>()) << r.dump();
    } else if (r["auth"].get<bool>()) {
      hub_auth++;
    }
  }
  EXPECT_GT(hub_auth, 0);
  EXPECT_GT(cdn, 0);
  EXPECT_EQ(hub_->Stats()["auth_to_cdn"], 0);
  EXPECT_EQ(m.Log().find(kToken), std::string::npos) << "token in the log";
}

TEST_F(MountTest, PrivateRepoWithoutTokenIsRefused) {
  MountedFs m(Spec());
  ASSERT_TRUE(m.mounted()) << m.Log();
  struct stat st;
  EXPECT_EQ(stat(m.Path("acme/secret").c_str(), &st), -1);
  // The hub answers a bare 401 for private and missing repos alike: ENOENT, and the log says why.
  EXPECT_EQ(errno, ENOENT) << strerror(errno);
  EXPECT_NE(m.Log().find("a token is needed"), std::string::npos) << m.Log();
}

TEST_F(MountTest, SingleRepoModeAndDaemonModeAndUnmount) {
  MountSpec s = Spec();
  s.repo = kRepo;
  s.daemon = true;
  MountedFs m(s);
  ASSERT_EQ(m.exit_code(), 0) << m.Log();
  ASSERT_TRUE(m.mounted()) << "modelfs mount returned before the mount was live";
  EXPECT_EQ(ReadAll(m.Path("config.json")), hub_->Content(Head(), "config.json", kRepo));
  // modelfs unmount removes it.
  std::string cmd = std::string(MODELFS_BINARY) + " unmount " + m.path();
  EXPECT_EQ(system(cmd.c_str()), 0);
  EXPECT_FALSE(IsMountPoint(m.path()));
}

TEST_F(MountTest, SingleRepoModeWithUnknownRepoFailsToMount) {
  MountSpec s = Spec();
  s.repo = "acme/does-not-exist";
  s.daemon = true;
  MountedFs m(s);
  EXPECT_NE(m.exit_code(), 0);
  EXPECT_FALSE(m.mounted());
}

TEST_F(MountTest, FailedDaemonMountSaysWhyOnTheTerminalAndLeavesNoDeadMount) {
  // A relative mount point, as a user types it: the daemon chdirs to "/" before it finds out
  // that the repo does not exist, and must still unmount the right directory.
  TempDir d;
  ASSERT_EQ(mkdir((d.path() + "/mnt").c_str(), 0755), 0);
  std::string out;
  int rc = RunCmd("cd " + d.path() + " && " + MODELFS_BINARY + " mount --endpoint " + hub_->endpoint() +
                      " --cache-dir " + d.path() + "/cache acme/does-not-exist mnt",
                  &out);
  EXPECT_EQ(rc, 1) << out;
  EXPECT_NE(out.find("acme/does-not-exist"), std::string::npos) << "the reason reaches the terminal: " << out;
  struct stat st;
  EXPECT_EQ(stat((d.path() + "/mnt").c_str(), &st), 0) << "dead mount left behind: " << strerror(errno);
  EXPECT_FALSE(IsMountPoint(d.path() + "/mnt"));
}

}  // namespace
}  // namespace modelfs::testing
