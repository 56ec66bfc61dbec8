// `modelfs mount --hf-cache`: the real binary and a real mount presented as a Hugging Face hub cache,
// read by the offline resolution of huggingface_hub. huggingface_hub is not packaged in Debian 12,
// so tests/integration/readers/hf_cache_offline.py performs its exact file-access pattern
// (try_to_load_from_cache, hf_hub_download and snapshot_download with HF_HUB_OFFLINE=1) and checks
// every file's bytes against the fake hub's manifest.
#include <errno.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <openssl/sha.h>
#include <sys/stat.h>
#include <unistd.h>

#include <array>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <set>

#include "tests/integration/mount_helper.h"
#include "tests/testing/fake_hub_process.h"
#include "tests/testing/temp_dir.h"

namespace modelfs::testing {
namespace {

std::string ReadFile(const std::string& path, int* err = nullptr) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    if (err) *err = errno;
    return "";
  }
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::string Sha256Hex(const std::string& data) {
  unsigned char md[SHA256_DIGEST_LENGTH];
  SHA256(reinterpret_cast<const unsigned char*>(data.data()), data.size(), md);
  char hex[2 * SHA256_DIGEST_LENGTH + 1];
  for (int i = 0; i < SHA256_DIGEST_LENGTH; i++) snprintf(hex + 2 * i, 3, "%02x", md[i]);
  return hex;
}

class HfCacheTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    FakeHubOptions o;
    FakeRepoSpec tiny;
    tiny.repo = "acme/tiny";
    tiny.total_size = 6 << 20;
    tiny.shards = 2;
    tiny.extra_revision = true;
    FakeRepoSpec ds;
    ds.repo = "acme/corpus";
    ds.type = "dataset";
    ds.total_size = 1 << 20;
    ds.shards = 1;
    o.repos = {tiny, ds};
    hub_ = new FakeHubProcess(o);
  }
  static void TearDownTestSuite() {
    delete hub_;
    hub_ = nullptr;
  }
  void SetUp() override { ASSERT_TRUE(hub_->ok()) << hub_->ServerOutput(); }

  MountSpec Spec() {
    MountSpec s;
    s.endpoint = hub_->endpoint();
    s.cache_dir = cache_.Sub("cache");
    s.extra = {"--hf-cache"};
    return s;
  }
  std::string WriteManifest(const std::string& repo) {
    const std::string path = cache_.Sub(std::to_string(manifests_++) + "-manifest.json");
    std::ofstream(path) << hub_->manifest(repo).dump();
    return path;
  }

  static FakeHubProcess* hub_;
  TempDir cache_{"modelfs-hfc"};
  int manifests_ = 0;
};
FakeHubProcess* HfCacheTest::hub_ = nullptr;

TEST_F(HfCacheTest, LayoutDetails) {
  MountedFs m(Spec());
  ASSERT_TRUE(m.mounted()) << m.Log();
  const std::string main = hub_->CommitOf("main", "acme/tiny");
  ASSERT_EQ(main.size(), 40u);
  // refs/main: the bare commit, no trailing newline (huggingface_hub does not strip it).
  EXPECT_EQ(ReadFile(m.Path("models--acme--tiny/refs/main")), main);
  struct stat st;
  ASSERT_EQ(stat(m.Path("models--acme--tiny/refs/main").c_str(), &st), 0);
  EXPECT_EQ(st.st_size, 40);
  // Snapshot files are regular files with the manifest's bytes; blobs/<etag> has the same bytes.
  const nlohmann::json* shard = nullptr;
  for (const auto& e : hub_->manifest("acme/tiny")["commits"][main]["files"]) {
    if (e["lfs"].get<bool>()) shard = &e;
  }
  ASSERT_NE(shard, nullptr);
  const std::string path = (*shard)["path"];
  const std::string sha = (*shard)["sha256"];
  const std::string snap = m.Path("models--acme--tiny/snapshots/" + main + "/" + path);
  EXPECT_EQ(Sha256Hex(ReadFile(snap)), sha);
  EXPECT_EQ(Sha256Hex(ReadFile(m.Path("models--acme--tiny/blobs/" + sha))), sha);
  // The repo folder has exactly blobs, refs, snapshots; .no_exist and trees/ are absent (ENOENT).
  std::set<std::string> names;
  for (auto& d : std::filesystem::directory_iterator(m.Path("models--acme--tiny"))) {
    names.insert(d.path().filename());
  }
  EXPECT_EQ(names, (std::set<std::string>{"blobs", "refs", "snapshots"}));
  for (const char* p : {"models--acme--tiny/.no_exist", "models--acme--tiny/trees",
                        "models--acme--nothere", "acme", ".locks"}) {
    errno = 0;
    EXPECT_NE(stat(m.Path(p).c_str(), &st), 0) << p;
    EXPECT_EQ(errno, ENOENT) << p;
  }
  // Read-only like the plain layout.
  EXPECT_LT(open(m.Path("models--acme--tiny/refs/main").c_str(), O_WRONLY), 0);
  EXPECT_EQ(errno, EROFS);
}

TEST_F(HfCacheTest, HuggingfaceHubOfflineResolution) {
  MountedFs m(Spec());
  ASSERT_TRUE(m.mounted()) << m.Log();
  const std::string script =
      std::string(MODELFS_SOURCE_DIR) + "/tests/integration/readers/hf_cache_offline.py";
  std::string out;
  // main and the tag v1.0 (refs/v1.0 appears on lookup), models and datasets.
  int rc = RunCmd("/usr/bin/python3 " + script + " " + m.path() + " acme/tiny model " +
                   WriteManifest("acme/tiny") + " main v1.0",
               &out);
  EXPECT_EQ(rc, 0) << out << m.Log();
  EXPECT_NE(out.find("OK "), std::string::npos) << out;
  out.clear();
  rc = RunCmd("/usr/bin/python3 " + script + " " + m.path() + " acme/corpus dataset " +
               WriteManifest("acme/corpus"),
           &out);
  EXPECT_EQ(rc, 0) << out << m.Log();
  // The check can fail: a wrong manifest (the tag's files checked against main's commit) fails it.
  out.clear();
  nlohmann::json bad = hub_->manifest("acme/tiny");
  bad["refs"]["main"] = hub_->CommitOf("v1.0", "acme/tiny");
  const std::string bad_path = cache_.Sub("bad-manifest.json");
  std::ofstream(bad_path) << bad.dump();
  rc = RunCmd("/usr/bin/python3 " + script + " " + m.path() + " acme/tiny model " + bad_path, &out);
  EXPECT_EQ(rc, 1) << out;
}

TEST_F(HfCacheTest, HfCacheRejectsSingleRepo) {
  MountSpec s = Spec();
  s.repo = "acme/tiny";
  MountedFs m(s);
  EXPECT_FALSE(m.mounted());
  EXPECT_EQ(m.exit_code(), 2) << m.Log();
}

}  // namespace
}  // namespace modelfs::testing
