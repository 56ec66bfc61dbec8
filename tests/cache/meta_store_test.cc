#include "cache/meta_store.h"

#include <gtest/gtest.h>

#include <fcntl.h>
#include <sys/stat.h>

#include <atomic>
#include <ctime>

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

// Sets the mtime of the stored ref (when the hub last confirmed it) `age_s` seconds into the past.
void AgeRef(const std::string& dir, const std::string& name, time_t age_s) {
  std::string path = dir + "/meta/models/org/name/refs/" + name;
  struct timespec ts[2];
  ts[0].tv_sec = ts[1].tv_sec = time(nullptr) - age_s;
  ts[0].tv_nsec = ts[1].tv_nsec = 0;
  ASSERT_EQ(utimensat(AT_FDCWD, path.c_str(), ts, 0), 0) << path;
}

TEST(MetaStoreTest, BranchIsReResolvedOnlyAfterTheTtl) {
  testing::TempDir dir;
  ScriptedHub hub;
  RepoId repo{"model", "org", "name"};
  const int64_t ttl = 3600;
  PersistentHubApi api(&hub, dir.path(), ttl);
  std::string first = hub.commit;
  ASSERT_EQ(api.ResolveRevision(repo, "main").value(), first);
  EXPECT_EQ(hub.calls, 1);
  // The branch moves on the hub; within the TTL the stored answer stands, with no hub call.
  hub.commit = std::string(40, 'd');
  EXPECT_EQ(api.ResolveRevision(repo, "main").value(), first);
  EXPECT_EQ(hub.calls, 1);
  AgeRef(dir.path(), "main", ttl - 60);
  EXPECT_EQ(api.ResolveRevision(repo, "main").value(), first);
  EXPECT_EQ(hub.calls, 1);
  // Past the TTL the hub is asked again and the new commit is stored and returned.
  AgeRef(dir.path(), "main", ttl + 60);
  EXPECT_EQ(api.ResolveRevision(repo, "main").value(), hub.commit);
  EXPECT_EQ(hub.calls, 2);
  // ... and its confirmation restarts the TTL.
  EXPECT_EQ(api.ResolveRevision(repo, "main").value(), hub.commit);
  EXPECT_EQ(hub.calls, 2);
  // Past the TTL with the hub down, the stored answer is used whatever its age.
  AgeRef(dir.path(), "main", 10 * ttl);
  hub.down = true;
  EXPECT_EQ(api.ResolveRevision(repo, "main").value(), hub.commit);
  EXPECT_EQ(hub.calls, 3);
}

TEST(MetaStoreTest, TtlZeroAsksTheHubEveryTime) {
  testing::TempDir dir;
  ScriptedHub hub;
  RepoId repo{"model", "org", "name"};
  PersistentHubApi api(&hub, dir.path(), 0);
  ASSERT_TRUE(api.ResolveRevision(repo, "main").ok());
  ASSERT_TRUE(api.ResolveRevision(repo, "main").ok());
  EXPECT_EQ(hub.calls, 2);
}

TEST(MetaStoreTest, PinnedCommitIsNeverReResolvedEvenWhenOld) {
  testing::TempDir dir;
  ScriptedHub hub;
  RepoId repo{"model", "org", "name"};
  PersistentHubApi api(&hub, dir.path(), 1);
  ASSERT_TRUE(api.ListTree(repo, hub.commit).ok());
  // Make every stored file old: a commit id has no TTL.
  std::string tree = dir.path() + "/meta/models/org/name/trees/" + hub.commit + ".json";
  struct timespec ts[2] = {{time(nullptr) - 1000000, 0}, {time(nullptr) - 1000000, 0}};
  ASSERT_EQ(utimensat(AT_FDCWD, tree.c_str(), ts, 0), 0);
  int before = hub.calls;
  hub.commit = std::string(40, 'e');  // whatever the hub would say now
  EXPECT_EQ(api.ResolveRevision(repo, std::string(40, 'c')).value(), std::string(40, 'c'));
  EXPECT_EQ(hub.calls, before);
}

}  // namespace
}  // namespace modelfs
