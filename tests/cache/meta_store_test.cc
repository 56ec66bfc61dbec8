#include "cache/meta_store.h"

#include <gtest/gtest.h>

#include <atomic>

#include "tests/testing/temp_dir.h"

namespace modelfs {
namespace {

// A HubApi whose availability the test switches.
class ScriptedHub : public HubApi {
 public:
  Result<std::string> ResolveRevision(const RepoId&, const std::string& rev) override {
    calls++;
    if (down) return Status::Unavailable("connection refused");
    if (rev == "missing") return Status::NotFound("RevisionNotFound");
    return commit;
  }
  Result<std::vector<FileEntry>> ListTree(const RepoId&, const std::string&) override {
    calls++;
    if (down) return Status::Unavailable("connection refused");
    FileEntry d;
    d.path = "sub";
    d.is_dir = true;
    FileEntry f;
    f.path = "sub/model.safetensors";
    f.size = 123;
    f.git_oid = std::string(40, '1');
    f.sha256 = std::string(64, '2');
    return std::vector<FileEntry>{d, f};
  }
  bool down = false;
  std::string commit = std::string(40, 'c');
  std::atomic<int> calls{0};
};

TEST(MetaStoreTest, RemembersAnswersForOfflineUse) {
  testing::TempDir dir;
  ScriptedHub hub;
  RepoId repo{"model", "org", "name"};
  {
    PersistentHubApi api(&hub, dir.path());
    ASSERT_EQ(api.ResolveRevision(repo, "").value(), hub.commit);
    ASSERT_EQ(api.ListTree(repo, hub.commit).value().size(), 2u);
  }
  hub.down = true;
  PersistentHubApi api(&hub, dir.path());
  auto c = api.ResolveRevision(repo, "");
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_EQ(c.value(), hub.commit);
  auto t = api.ListTree(repo, hub.commit);
  ASSERT_TRUE(t.ok());
  ASSERT_EQ(t.value().size(), 2u);
  EXPECT_EQ(t.value()[1].path, "sub/model.safetensors");
  EXPECT_EQ(t.value()[1].sha256, std::string(64, '2'));
  EXPECT_TRUE(t.value()[0].is_dir);
  // A revision never seen before fails with the hub's error.
  EXPECT_EQ(api.ResolveRevision(repo, "v2").status().code(), Code::kUnavailable);
}

TEST(MetaStoreTest, CommitWithStoredTreeNeedsNoHub) {
  testing::TempDir dir;
  ScriptedHub hub;
  RepoId repo{"model", "org", "name"};
  PersistentHubApi api(&hub, dir.path());
  ASSERT_TRUE(api.ListTree(repo, hub.commit).ok());
  int before = hub.calls;
  EXPECT_EQ(api.ResolveRevision(repo, hub.commit).value(), hub.commit);
  EXPECT_TRUE(api.ListTree(repo, hub.commit).ok());
  EXPECT_EQ(hub.calls, before);
}

TEST(MetaStoreTest, NotFoundIsNotMaskedByStoredRef) {
  testing::TempDir dir;
  ScriptedHub hub;
  RepoId repo{"model", "org", "name"};
  PersistentHubApi api(&hub, dir.path());
  EXPECT_EQ(api.ResolveRevision(repo, "missing").status().code(), Code::kNotFound);
}

TEST(MetaStoreTest, HostileRevisionCannotEscapeTheCacheDir) {
  testing::TempDir dir;
  ScriptedHub hub;
  RepoId repo{"model", "..", ".."};
  PersistentHubApi api(&hub, dir.path());
  ASSERT_TRUE(api.ResolveRevision(repo, "../../../etc/x").ok());
  // Everything written lives under dir/meta.
  EXPECT_NE(access((dir.path() + "/meta").c_str(), F_OK), -1);
  EXPECT_EQ(access((dir.path() + "/etc").c_str(), F_OK), -1);
}

}  // namespace
}  // namespace modelfs
