// The cache tools (status, verify, gc) over a real cache directory filled by a real DiskBlobStore
// and PersistentHubApi, plus the edge-box mount options (--cache-size N%, --cache-min-free,
// --offline / HF_HUB_OFFLINE, --revision-ttl).
#include "tools/cmd_cache.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <nlohmann/json.hpp>

#include "cache/disk_blob_store.h"
#include "cache/meta_store.h"
#include "cache/pins.h"
#include "tests/testing/fake_range_source.h"
#include "tests/testing/temp_dir.h"
#include "tools/options.h"

namespace modelfs::cli {
namespace {

using modelfs::testing::FakeRangeSource;
using modelfs::testing::RandomBytes;

// A hub whose one commit holds the files the test added to the fake range source.
class OneCommitHub : public HubApi {
 public:
  Result<std::string> ResolveRevision(const RepoId&, const std::string&) override { return commit; }
  Result<std::vector<FileEntry>> ListTree(const RepoId&, const std::string&) override { return files; }
  std::string commit = std::string(40, 'a');
  std::vector<FileEntry> files;
};

class CmdCacheTest : public ::testing::Test {
 protected:
  void SetUp() override {
    RepoId repo{"model", "org", "m"};
    // Two LFS files, fully read (so verified), and one partly read.
    for (int i = 0; i < 3; i++) {
      data_.push_back(RandomBytes((5 + i) * kBlockSize + 100, 60 + i));
      std::string path = "model-" + std::to_string(i) + ".safetensors";
      BlobRef ref = source_.Add(path, data_.back());
      ref.repo = repo;
      refs_.push_back(ref);
      FileEntry f;
      f.path = path;
      f.size = ref.size;
      f.sha256 = ref.hash;
      f.git_oid = std::string(40, '1' + i);
      hub_.files.push_back(f);
    }
    PersistentHubApi meta(&hub_, dir_.path());
    ASSERT_TRUE(meta.ResolveRevision(repo, "main").ok());
    ASSERT_TRUE(meta.ListTree(repo, hub_.commit).ok());
    CacheOptions o;
    o.dir = dir_.path();
    auto store = DiskBlobStore::Open(o, &source_).value();
    std::vector<char> buf(8 * kBlockSize);
    size_t n;
    for (int i = 0; i < 2; i++) ASSERT_TRUE(store->Read(refs_[i], 0, buf.size(), buf.data(), &n).ok());
    ASSERT_TRUE(store->Read(refs_[2], 0, kBlockSize, buf.data(), &n).ok());
    ASSERT_TRUE(store->WaitIdle(10000));
    ASSERT_TRUE(store->IsVerified(refs_[0].key));
  }
  using Command = int (*)(const std::vector<std::string>&, const Environment&, std::string*, std::string*);
  nlohmann::json Json(Command cmd, std::vector<std::string> args, int want_rc) {
    args.insert(args.end(), {"--cache-dir", dir_.path()});
    return JsonAsIs(cmd, args, want_rc);
  }
  // Without adding --cache-dir: the directory comes from env_ and its config files.
  nlohmann::json JsonAsIs(Command cmd, std::vector<std::string> args, int want_rc) {
    std::string out, err;
    args.insert(args.end(), {"--format", "json"});
    EXPECT_EQ(cmd(args, Env(), &out, &err), want_rc) << out << err;
    return nlohmann::json::parse(out.empty() ? "null" : out);
  }
  // Hermetic: only these variables, and config files only under the temporary HOME.
  Environment Env() const { return Environment(env_); }
  std::string DataPath(const BlobRef& r) {
    return dir_.path() + "/blobs/" + r.hash.substr(0, 2) + "/" + r.key + ".data";
  }

  modelfs::testing::TempDir dir_;
  modelfs::testing::TempDir home_;
  std::map<std::string, std::string> env_{{"HOME", home_.path()},
                                          {"MODELFS_SYSTEM_CONFIG", home_.Sub("no-system-config")}};
  FakeRangeSource source_;
  OneCommitHub hub_;
  std::vector<std::string> data_;
  std::vector<BlobRef> refs_;
};

TEST_F(CmdCacheTest, StatusReportsUseAndPerFileState) {
  auto j = Json(&StatusCommand, {}, 0);
  EXPECT_EQ(j["blobs"], 3);
  uint64_t want_used = data_[0].size() + data_[1].size() + 4ull * kBlockSize;  // chunk 0 of #2
  EXPECT_NEAR(j["used_bytes"].get<double>(), static_cast<double>(want_used), 3 * 4096.0);
  ASSERT_EQ(j["repos"].size(), 1u);
  auto& r = j["repos"][0];
  EXPECT_EQ(r["repo"], "org/m");
  EXPECT_EQ(r["revisions"], nlohmann::json::array({"main"}));
  ASSERT_EQ(r["files"].size(), 3u);
  for (auto& f : r["files"]) {
    bool partial = f["path"] == "model-2.safetensors";
    EXPECT_EQ(f["verified"].get<bool>(), !partial) << f.dump();
    if (partial) EXPECT_EQ(f["cached_bytes"], 4ull * kBlockSize);
    else EXPECT_EQ(f["cached_bytes"], f["size"]);
  }
  std::string out, err;
  EXPECT_EQ(StatusCommand({"--cache-dir", dir_.path()}, Env(), &out, &err), 0);
  EXPECT_NE(out.find("partial"), std::string::npos) << out;
  EXPECT_EQ(StatusCommand({"--bogus"}, Env(), &out, &err), 2);
}

TEST_F(CmdCacheTest, VerifyFindsAndDropsBadDataAndSaysSoInItsExitCode) {
  auto clean = Json(&VerifyCommand, {}, 0);
  EXPECT_EQ(clean["checked"], 3);
  EXPECT_EQ(clean["bad"], 0);
  // Flip a byte inside block 2 of file 0 on disk.
  int fd = open(DataPath(refs_[0]).c_str(), O_WRONLY);
  ASSERT_GE(fd, 0);
  char c = static_cast<char>(data_[0][2 * kBlockSize + 5] ^ 0x55);
  ASSERT_EQ(pwrite(fd, &c, 1, 2 * kBlockSize + 5), 1);
  close(fd);
  auto bad = Json(&VerifyCommand, {"org/m"}, 1);
  EXPECT_EQ(bad["bad"], 1);
  // The bad block is gone, the rest stays; a second run finds nothing bad.
  auto again = Json(&VerifyCommand, {"org/m@main"}, 0);
  EXPECT_EQ(again["bad"], 0);
  auto st = Json(&StatusCommand, {}, 0);
  for (auto& f : st["repos"][0]["files"])
    if (f["path"] == "model-0.safetensors") {
      EXPECT_FALSE(f["verified"].get<bool>());
      EXPECT_EQ(f["cached_bytes"].get<uint64_t>(), data_[0].size() - kBlockSize);
    }
  std::string out, err;
  EXPECT_EQ(VerifyCommand({"org/other", "--cache-dir", dir_.path()}, Env(), &out, &err), 1);
}

TEST_F(CmdCacheTest, GcDropsUnreferencedThenShrinksVerifiedFirst) {
  // An unreferenced blob (no stored tree names it).
  {
    CacheOptions o;
    o.dir = dir_.path();
    auto store = DiskBlobStore::Open(o, &source_).value();
    BlobRef stray = source_.Add("stray.bin", RandomBytes(2 * kBlockSize, 70));
    std::vector<char> buf(2 * kBlockSize);
    size_t n;
    ASSERT_TRUE(store->Read(stray, 0, buf.size(), buf.data(), &n).ok());
    ASSERT_TRUE(store->WaitIdle(10000));
  }
  EXPECT_EQ(Json(&StatusCommand, {}, 0)["blobs"], 4);
  auto j = Json(&GcCommand, {}, 0);
  EXPECT_EQ(j["unreferenced_blobs"], 1);
  EXPECT_EQ(Json(&StatusCommand, {}, 0)["blobs"], 3);
  // Shrink to 5 MiB: the verified whole files go, the partial one (4 MiB) stays.
  j = Json(&GcCommand, {"--size", "5MiB"}, 0);
  EXPECT_LE(j["used_bytes"].get<uint64_t>(), 5ull << 20);
  auto st = Json(&StatusCommand, {}, 0);
  EXPECT_EQ(st["blobs"], 1);
  EXPECT_EQ(st["repos"][0]["cached_bytes"], 4ull * kBlockSize);
  std::string out, err;
  EXPECT_EQ(GcCommand({"--size", "lots"}, Env(), &out, &err), 2);
}

// Without --cache-dir, status, verify and gc work on the config file's cache-dir, as a mount does;
// $MODELFS_CACHE beats the file, --cache-dir beats both.
TEST_F(CmdCacheTest, EveryCacheToolHonoursTheConfigFilesCacheDir) {
  mkdir(home_.Sub(".config").c_str(), 0700);
  mkdir(home_.Sub(".config/modelfs").c_str(), 0700);
  modelfs::testing::WriteFileOrDie(home_.Sub(".config/modelfs/config"), "cache-dir = " + dir_.path() + "\n");
  auto st = JsonAsIs(&StatusCommand, {}, 0);
  EXPECT_EQ(st["cache_dir"], dir_.path());
  EXPECT_EQ(st["blobs"], 3);
  EXPECT_EQ(JsonAsIs(&VerifyCommand, {}, 0)["checked"], 3);
  EXPECT_EQ(JsonAsIs(&GcCommand, {}, 0)["unreferenced_blobs"], 0);
  env_["MODELFS_CACHE"] = home_.Sub("from-env");
  mkdir(home_.Sub("from-env").c_str(), 0700);
  EXPECT_EQ(JsonAsIs(&StatusCommand, {}, 0)["cache_dir"], home_.Sub("from-env"));
  EXPECT_EQ(Json(&StatusCommand, {}, 0)["cache_dir"], dir_.path());
  // A malformed config file is an error, not a silent fall back to ~/.cache/modelfs.
  env_.erase("MODELFS_CACHE");
  modelfs::testing::WriteFileOrDie(home_.Sub(".config/modelfs/config"), "cache-dri = /typo\n");
  std::string out, err;
  EXPECT_EQ(StatusCommand({}, Env(), &out, &err), 2);
  EXPECT_NE(err.find("cache-dri"), std::string::npos) << err;
}

TEST_F(CmdCacheTest, GcNeverDropsPinnedBlobs) {
  // Pin the two verified files; shrinking to nothing must keep them and drop only the partial one.
  Pin pin;
  pin.repo = "org/m";
  pin.commit = hub_.commit;
  pin.keys = {refs_[0].key, refs_[1].key};
  pin.bytes = refs_[0].size + refs_[1].size;
  ASSERT_TRUE(SavePin(dir_.path(), PinFileName(RepoId{"model", "org", "m"}), pin).ok());
  auto j = Json(&GcCommand, {"--size", "0"}, 0);
  EXPECT_EQ(j["pinned_blobs_kept"], 2);
  EXPECT_EQ(j["removed_blobs"], 1);
  EXPECT_EQ(access(DataPath(refs_[0]).c_str(), F_OK), 0);
  EXPECT_EQ(access(DataPath(refs_[1]).c_str(), F_OK), 0);
  EXPECT_NE(access(DataPath(refs_[2]).c_str(), F_OK), 0);
}

// The edge-box mount options (a quota as a share of the disk, the free-space floor, offline).
// Hermetic like OptionsTest: only env_'s variables, no machine config file.
class EdgeOptionsTest : public ::testing::Test {
 protected:
  Status Parse(std::vector<std::string> args, MountConfig* cfg) {
    bool help = false;
    return ParseMount(args, Environment(env_), cfg, &help);
  }
  modelfs::testing::TempDir home_;
  std::map<std::string, std::string> env_{{"HOME", home_.path()},
                                          {"MODELFS_SYSTEM_CONFIG", home_.Sub("no-system-config")}};
};

TEST_F(EdgeOptionsTest, DefaultsKeepTenPercentFreeAndAreOnline) {
  MountConfig cfg;
  ASSERT_TRUE(Parse({"/m"}, &cfg).ok());
  EXPECT_EQ(cfg.cache.min_free_percent, 10.0);
  EXPECT_EQ(cfg.cache.max_fs_percent, 0.0);
  EXPECT_FALSE(cfg.cache.offline);
  EXPECT_EQ(cfg.cache.revision_ttl_s, 72 * 3600);
}

TEST_F(EdgeOptionsTest, PercentSizesOfflineAndTtl) {
  MountConfig cfg;
  ASSERT_TRUE(Parse({"--cache-size", "25%", "--cache-min-free", "5%", "--offline",
                     "--revision-ttl", "30m", "/m"}, &cfg).ok());
  EXPECT_EQ(cfg.cache.max_fs_percent, 25.0);
  EXPECT_EQ(cfg.cache.min_free_percent, 5.0);
  EXPECT_TRUE(cfg.cache.offline);
  EXPECT_EQ(cfg.cache.revision_ttl_s, 1800);
  MountConfig zero;
  ASSERT_TRUE(Parse({"--revision-ttl", "0", "--cache-min-free", "0%", "/m"}, &zero).ok());
  EXPECT_EQ(zero.cache.revision_ttl_s, 0);
  EXPECT_EQ(zero.cache.min_free_percent, 0.0);
  for (auto bad : std::vector<std::vector<std::string>>{{"--cache-size", "120%", "/m"},
                                                       {"--cache-size", "0%", "/m"},
                                                       {"--cache-min-free", "10", "/m"},
                                                       {"--revision-ttl", "3 weeks", "/m"},
                                                       {"--offline=1", "/m"}}) {
    MountConfig c;
    EXPECT_FALSE(Parse(bad, &c).ok()) << bad[0] << " " << bad[1];
  }
}

TEST_F(EdgeOptionsTest, HfHubOfflineEnvironmentTurnsOfflineOn) {
  for (const char* v : {"1", "true", "YES", "on"}) {
    env_["HF_HUB_OFFLINE"] = v;
    MountConfig cfg;
    ASSERT_TRUE(Parse({"/m"}, &cfg).ok());
    EXPECT_TRUE(cfg.cache.offline) << v;
  }
  for (const char* v : {"0", "false", ""}) {
    env_["HF_HUB_OFFLINE"] = v;
    MountConfig cfg;
    ASSERT_TRUE(Parse({"/m"}, &cfg).ok());
    EXPECT_FALSE(cfg.cache.offline) << v;
  }
}

}  // namespace
}  // namespace modelfs::cli
