// ModelFs without a kernel: lookups, listings, attributes, reads and pinning against an in-memory
// hub and blob store.
#include "fs/model_fs.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <atomic>
#include <chrono>
#include <functional>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "fs/errno.h"
#include "tests/testing/fake_hub_api.h"
#include "tests/testing/memory_blob_store.h"

namespace modelfs {
namespace {

using testing::FakeHubApi;
using testing::MemoryBlobStore;

const std::string kC1(40, '1');  // commits
const std::string kC2(40, '2');
const std::string kPr(40, 'a');

RepoId Model(const std::string& ns, const std::string& name) { return RepoId{"model", ns, name}; }
RepoId Dataset(const std::string& ns, const std::string& name) {
  return RepoId{"dataset", ns, name};
}

class ModelFsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const RepoId gpt = Model("acme", "gpt");
    hub_.AddRepo(gpt);
    hub_.SetRef(gpt, "main", kC1);
    hub_.SetRef(gpt, "v2", kC2);
    hub_.SetRef(gpt, "refs/pr/1", kPr);
    config_ = store_.MakeFile("config.json", "{\"a\":1}");
    weights_ = store_.MakeFile("model.safetensors", std::string(10000, 'w'), /*lfs=*/true);
    nested_ = store_.MakeFile("sub/dir/tok.txt", "nested!");
    hub_.SetTree(gpt, kC1,
                 {MemoryBlobStore::MakeDir("sub"), config_, weights_, nested_,
                  MemoryBlobStore::MakeDir("sub/dir"), MemoryBlobStore::MakeDir("empty")});
    hub_.SetTree(gpt, kC2, {store_.MakeFile("config.json", "version two")});
    hub_.SetTree(gpt, kPr, {store_.MakeFile("README.md", "pr readme")});

    const RepoId squad = Dataset("acme", "squad");
    hub_.AddRepo(squad);
    hub_.SetRef(squad, "main", kC1);
    hub_.SetTree(squad, kC1, {store_.MakeFile("data/train.jsonl", "{}\n{}\n")});
  }

  std::unique_ptr<ModelFs> MakeFs(FsOptions opts = {}) {
    return std::make_unique<ModelFs>(std::move(opts), hub_, store_);
  }

  // Walks "a/b/c" from the root; returns the final entry's ino (0 and a failure on error).
  static uint64_t Walk(ModelFs& fs, const std::string& path, Status* err = nullptr) {
    uint64_t ino = ModelFs::kRootIno;
    size_t start = 0;
    while (start <= path.size()) {
      size_t slash = path.find('/', start);
      if (slash == std::string::npos) slash = path.size();
      Result<FsEntry> e = fs.Lookup(ino, path.substr(start, slash - start));
      if (!e.ok()) {
        if (err != nullptr) *err = e.status();
        return 0;
      }
      ino = e->attr.ino;
      start = slash + 1;
    }
    return ino;
  }

  static std::vector<std::string> Names(ModelFs& fs, uint64_t ino) {
    Result<DirListing> l = fs.ReadDir(ino);
    EXPECT_TRUE(l.ok()) << l.status().ToString();
    std::vector<std::string> out;
    if (l.ok()) {
      for (const DirEntry& e : l->entries) out.push_back(e.name);
    }
    return out;
  }

  static std::string ReadAll(ModelFs& fs, uint64_t ino) {
    Result<FsAttr> a = fs.GetAttr(ino);
    EXPECT_TRUE(a.ok());
    std::string buf(a->size + 10, '\0');
    size_t n = 0;
    Status s = fs.Read(ino, 0, buf.size(), buf.data(), &n);
    EXPECT_TRUE(s.ok()) << s.ToString();
    buf.resize(n);
    return buf;
  }

  FakeHubApi hub_;
  MemoryBlobStore store_;
  FileEntry config_, weights_, nested_;
};

TEST(ModelFsNames, HubNameRules) {
  EXPECT_TRUE(ModelFs::IsValidHubName("acme"));
  EXPECT_TRUE(ModelFs::IsValidHubName("Llama-3.1_8B"));
  EXPECT_TRUE(ModelFs::IsValidHubName("a"));
  EXPECT_TRUE(ModelFs::IsValidHubName(std::string(96, 'x')));
  EXPECT_FALSE(ModelFs::IsValidHubName(std::string(97, 'x')));
  EXPECT_FALSE(ModelFs::IsValidHubName(""));
  EXPECT_FALSE(ModelFs::IsValidHubName(".hidden"));
  EXPECT_FALSE(ModelFs::IsValidHubName("-x"));
  EXPECT_FALSE(ModelFs::IsValidHubName("_x"));
  EXPECT_FALSE(ModelFs::IsValidHubName("a--b"));
  EXPECT_FALSE(ModelFs::IsValidHubName("a..b"));
  EXPECT_FALSE(ModelFs::IsValidHubName("a b"));
  EXPECT_FALSE(ModelFs::IsValidHubName("a@b"));
}

TEST(ModelFsNames, RepoDirNames) {
  std::string name, rev;
  ASSERT_TRUE(ModelFs::ParseRepoDirName("gpt", &name, &rev));
  EXPECT_EQ(name, "gpt");
  EXPECT_EQ(rev, "");
  ASSERT_TRUE(ModelFs::ParseRepoDirName("gpt@v2", &name, &rev));
  EXPECT_EQ(rev, "v2");
  ASSERT_TRUE(ModelFs::ParseRepoDirName("gpt@refs%2Fpr%2F1", &name, &rev));
  EXPECT_EQ(name, "gpt");
  EXPECT_EQ(rev, "refs/pr/1");
  ASSERT_TRUE(ModelFs::ParseRepoDirName("gpt@refs%2fpr%2f1", &name, &rev));
  EXPECT_EQ(rev, "refs/pr/1");
  EXPECT_FALSE(ModelFs::ParseRepoDirName("gpt@", &name, &rev));
  EXPECT_FALSE(ModelFs::ParseRepoDirName("@main", &name, &rev));
  EXPECT_FALSE(ModelFs::ParseRepoDirName("gpt@a..b", &name, &rev));
  EXPECT_FALSE(ModelFs::ParseRepoDirName("gpt@%2Fmain", &name, &rev));
  EXPECT_FALSE(ModelFs::ParseRepoDirName("gpt@a b", &name, &rev));
  EXPECT_FALSE(ModelFs::ParseRepoDirName("bad--name@main", &name, &rev));
}

TEST(ModelFsErrno, Mapping) {
  EXPECT_EQ(ToErrno(Status::Ok()), 0);
  EXPECT_EQ(ToErrno(Status::NotFound("")), ENOENT);
  EXPECT_EQ(ToErrno(Status::PermissionDenied("")), EACCES);
  EXPECT_EQ(ToErrno(Status::ReadOnly("")), EROFS);
  EXPECT_EQ(ToErrno(Status::InvalidArgument("")), EIO);
  EXPECT_EQ(ToErrno(Status::Unavailable("")), EIO);
  EXPECT_EQ(ToErrno(Status::IoError("")), EIO);
  EXPECT_EQ(ToErrno(Status::Corruption("")), EIO);
}

TEST_F(ModelFsTest, OrgLookupNeedsNoNetwork) {
  auto fs = MakeFs();
  Result<FsEntry> org = fs->Lookup(ModelFs::kRootIno, "anything-at-all");
  ASSERT_TRUE(org.ok());
  EXPECT_TRUE(org->attr.is_dir());
  EXPECT_EQ(hub_.resolve_calls(), 0);
  EXPECT_EQ(hub_.list_calls(), 0);
  // Same inode the second time.
  EXPECT_EQ(fs->Lookup(ModelFs::kRootIno, "anything-at-all")->attr.ino, org->attr.ino);
}

TEST_F(ModelFsTest, InvalidNamesAreNotFound) {
  auto fs = MakeFs();
  for (const char* bad : {".Trash", ".git", "a--b", "a..b", "-x", "has space"}) {
    Result<FsEntry> e = fs->Lookup(ModelFs::kRootIno, bad);
    ASSERT_FALSE(e.ok()) << bad;
    EXPECT_EQ(ToErrno(e.status()), ENOENT) << bad;
  }
  uint64_t org = Walk(*fs, "acme");
  for (const char* bad : {"gpt@", "@main", ".hidden", "gpt@a..b"}) {
    Result<FsEntry> e = fs->Lookup(org, bad);
    ASSERT_FALSE(e.ok()) << bad;
    EXPECT_EQ(ToErrno(e.status()), ENOENT) << bad;
  }
  EXPECT_EQ(hub_.resolve_calls(), 0);
  // Invalid names do not show up in listings.
  EXPECT_EQ(Names(*fs, ModelFs::kRootIno), (std::vector<std::string>{".", "..", "acme"}));
}

TEST_F(ModelFsTest, RepoAtDefaultBranch) {
  auto fs = MakeFs();
  uint64_t repo = Walk(*fs, "acme/gpt");
  ASSERT_NE(repo, 0u);
  EXPECT_EQ(hub_.resolve_calls(), 1);
  EXPECT_EQ(hub_.list_calls(), 1);
  EXPECT_EQ(hub_.last_rev(), "");  // "" = default branch, resolved by the hub
  EXPECT_EQ(Names(*fs, repo), (std::vector<std::string>{".", "..", "config.json", "empty",
                                                        "model.safetensors", "sub"}));
  EXPECT_EQ(ReadAll(*fs, Walk(*fs, "acme/gpt/config.json")), "{\"a\":1}");
  // Second lookup: same inode, no more hub calls.
  EXPECT_EQ(Walk(*fs, "acme/gpt"), repo);
  EXPECT_EQ(hub_.resolve_calls(), 1);
  EXPECT_EQ(hub_.list_calls(), 1);
}

TEST_F(ModelFsTest, RepoAtRevisionAndPrRef) {
  auto fs = MakeFs();
  uint64_t v2 = Walk(*fs, "acme/gpt@v2");
  ASSERT_NE(v2, 0u);
  EXPECT_EQ(hub_.last_rev(), "v2");
  EXPECT_EQ(ReadAll(*fs, Walk(*fs, "acme/gpt@v2/config.json")), "version two");

  uint64_t pr = Walk(*fs, "acme/gpt@refs%2Fpr%2F1");
  ASSERT_NE(pr, 0u);
  EXPECT_EQ(hub_.last_rev(), "refs/pr/1");
  EXPECT_EQ(ReadAll(*fs, Walk(*fs, "acme/gpt@refs%2Fpr%2F1/README.md")), "pr readme");

  // By commit id (full and short).
  EXPECT_EQ(ReadAll(*fs, Walk(*fs, "acme/gpt@" + kC2 + "/config.json")), "version two");
  EXPECT_EQ(ReadAll(*fs, Walk(*fs, "acme/gpt@2222222/config.json")), "version two");

  uint64_t main_dir = Walk(*fs, "acme/gpt");
  EXPECT_NE(main_dir, v2);
  EXPECT_NE(main_dir, pr);
  EXPECT_EQ(Names(*fs, Walk(*fs, "acme")),
            (std::vector<std::string>{".", "..", "gpt", "gpt@2222222", "gpt@" + kC2,
                                      "gpt@refs%2Fpr%2F1", "gpt@v2"}));
}

TEST_F(ModelFsTest, NestedPaths) {
  auto fs = MakeFs();
  uint64_t sub = Walk(*fs, "acme/gpt/sub");
  ASSERT_NE(sub, 0u);
  EXPECT_EQ(Names(*fs, sub), (std::vector<std::string>{".", "..", "dir"}));
  uint64_t dir = Walk(*fs, "acme/gpt/sub/dir");
  EXPECT_EQ(Names(*fs, dir), (std::vector<std::string>{".", "..", "tok.txt"}));
  EXPECT_EQ(ReadAll(*fs, Walk(*fs, "acme/gpt/sub/dir/tok.txt")), "nested!");
  EXPECT_EQ(Names(*fs, Walk(*fs, "acme/gpt/empty")), (std::vector<std::string>{".", ".."}));

  // ".." of each level points at its parent.
  Result<DirListing> l = fs->ReadDir(dir);
  ASSERT_TRUE(l.ok());
  EXPECT_EQ(l->entries[1].attr.ino, sub);
  EXPECT_TRUE(l->immutable);
  l = fs->ReadDir(Walk(*fs, "acme/gpt"));
  EXPECT_EQ(l->entries[1].attr.ino, Walk(*fs, "acme"));
  l = fs->ReadDir(Walk(*fs, "acme"));
  EXPECT_EQ(l->entries[1].attr.ino, ModelFs::kRootIno);
  EXPECT_FALSE(l->immutable);
  l = fs->ReadDir(ModelFs::kRootIno);
  EXPECT_EQ(l->entries[1].attr.ino, ModelFs::kRootIno);
  EXPECT_FALSE(l->immutable);
}

TEST_F(ModelFsTest, TreeWithoutDirEntriesStillBuildsDirs) {
  const RepoId r = Model("acme", "flat");
  hub_.SetRef(r, "main", kC1);
  hub_.SetTree(r, kC1, {store_.MakeFile("a/b/c.txt", "c"), store_.MakeFile("a/d.txt", "d")});
  auto fs = MakeFs();
  EXPECT_EQ(Names(*fs, Walk(*fs, "acme/flat/a")),
            (std::vector<std::string>{".", "..", "b", "d.txt"}));
  EXPECT_EQ(ReadAll(*fs, Walk(*fs, "acme/flat/a/b/c.txt")), "c");
}

TEST_F(ModelFsTest, ConflictingTreeIsAnError) {
  const RepoId r = Model("acme", "broken");
  hub_.SetRef(r, "main", kC1);
  hub_.SetTree(r, kC1, {store_.MakeFile("a", "file"), store_.MakeFile("a/b", "under a file")});
  auto fs = MakeFs();
  Status err;
  EXPECT_EQ(Walk(*fs, "acme/broken", &err), 0u);
  EXPECT_EQ(ToErrno(err), EIO);
}

TEST_F(ModelFsTest, NotFoundCases) {
  auto fs = MakeFs();
  Status err;
  EXPECT_EQ(Walk(*fs, "acme/nope", &err), 0u);
  EXPECT_EQ(ToErrno(err), ENOENT);
  EXPECT_EQ(Walk(*fs, "acme/gpt@no-such-branch", &err), 0u);
  EXPECT_EQ(ToErrno(err), ENOENT);
  EXPECT_EQ(Walk(*fs, "acme/gpt/no-such-file", &err), 0u);
  EXPECT_EQ(ToErrno(err), ENOENT);
  EXPECT_EQ(Walk(*fs, "acme/gpt/sub/nope", &err), 0u);
  EXPECT_EQ(ToErrno(err), ENOENT);
  EXPECT_EQ(Walk(*fs, "acme/gpt/config.json/x", &err), 0u);
  EXPECT_EQ(ToErrno(err), ENOENT);
  EXPECT_EQ(ToErrno(fs->GetAttr(999999).status()), ENOENT);
  // Failed repo lookups leave nothing behind and are retried (the repo may appear later).
  EXPECT_EQ(Names(*fs, Walk(*fs, "acme")), (std::vector<std::string>{".", "..", "gpt"}));
  const int calls = hub_.resolve_calls();
  EXPECT_EQ(Walk(*fs, "acme/nope", &err), 0u);
  EXPECT_EQ(hub_.resolve_calls(), calls + 1);
  const RepoId nope = Model("acme", "nope");
  hub_.SetRef(nope, "main", kC1);
  hub_.SetTree(nope, kC1, {store_.MakeFile("x", "now here")});
  EXPECT_EQ(ReadAll(*fs, Walk(*fs, "acme/nope/x")), "now here");
}

TEST_F(ModelFsTest, HubErrorsPropagateAndAreRetried) {
  auto fs = MakeFs();
  hub_.SetResolveError(Status::Unavailable("hub down"));
  Status err;
  EXPECT_EQ(Walk(*fs, "acme/gpt", &err), 0u);
  EXPECT_EQ(ToErrno(err), EIO);
  hub_.SetResolveError(Status::PermissionDenied("gated"));
  EXPECT_EQ(Walk(*fs, "acme/gpt", &err), 0u);
  EXPECT_EQ(ToErrno(err), EACCES);
  hub_.SetResolveError(Status::Ok());
  hub_.SetListError(Status::Unavailable("tree timeout"));
  EXPECT_EQ(Walk(*fs, "acme/gpt", &err), 0u);
  EXPECT_EQ(ToErrno(err), EIO);
  hub_.SetListError(Status::Ok());
  EXPECT_NE(Walk(*fs, "acme/gpt"), 0u);
}

TEST_F(ModelFsTest, Attributes) {
  FsOptions opts;
  opts.uid = 1234;
  opts.gid = 5678;
  opts.entry_timeout_s = 11;
  opts.attr_timeout_s = 22;
  auto fs = MakeFs(opts);
  Result<FsAttr> root = fs->GetAttr(ModelFs::kRootIno);
  ASSERT_TRUE(root.ok());
  EXPECT_EQ(root->mode, static_cast<uint32_t>(S_IFDIR | 0555));
  EXPECT_EQ(root->nlink, 2u);

  Result<FsEntry> org = fs->Lookup(ModelFs::kRootIno, "acme");
  ASSERT_TRUE(org.ok());
  EXPECT_EQ(org->entry_timeout_s, 11);
  EXPECT_EQ(org->attr_timeout_s, 22);
  Result<FsEntry> repo = fs->Lookup(org->attr.ino, "gpt");
  ASSERT_TRUE(repo.ok());
  EXPECT_EQ(repo->attr.mode, static_cast<uint32_t>(S_IFDIR | 0555));
  Result<FsEntry> w = fs->Lookup(repo->attr.ino, "model.safetensors");
  ASSERT_TRUE(w.ok());
  EXPECT_EQ(w->attr.mode, static_cast<uint32_t>(S_IFREG | 0444));
  EXPECT_EQ(w->attr.size, 10000u);
  EXPECT_EQ(w->attr.nlink, 1u);
  EXPECT_EQ(w->attr.blocks, 20u);  // ceil(10000 / 512)
  EXPECT_EQ(w->attr.uid, 1234u);
  EXPECT_EQ(w->attr.gid, 5678u);
  EXPECT_EQ(w->attr.time_sec, root->time_sec);
  EXPECT_EQ(w->attr.time_nsec, root->time_nsec);
  EXPECT_GT(w->attr.time_sec, 1600000000);
  EXPECT_EQ(fs->GetAttr(w->attr.ino)->size, 10000u);

  // Listing attrs match lookup attrs.
  Result<DirListing> l = fs->ReadDir(repo->attr.ino);
  ASSERT_TRUE(l.ok());
  for (const DirEntry& e : l->entries) {
    if (e.name == "model.safetensors") {
      EXPECT_EQ(e.attr.ino, w->attr.ino);
    }
    if (e.name == "sub") {
      EXPECT_TRUE(e.attr.is_dir());
    }
  }
  // A file is not a directory.
  EXPECT_FALSE(fs->ReadDir(w->attr.ino).ok());
}

TEST_F(ModelFsTest, ReadsAtOffsetsAndEof) {
  auto fs = MakeFs();
  const uint64_t ino = Walk(*fs, "acme/gpt/model.safetensors");
  ASSERT_NE(ino, 0u);
  char buf[100];
  size_t n = 0;
  ASSERT_TRUE(fs->Read(ino, 0, 10, buf, &n).ok());
  EXPECT_EQ(n, 10u);
  ASSERT_TRUE(fs->Read(ino, 9990, 100, buf, &n).ok());
  EXPECT_EQ(n, 10u);  // crosses EOF
  ASSERT_TRUE(fs->Read(ino, 10000, 100, buf, &n).ok());
  EXPECT_EQ(n, 0u);  // at EOF
  ASSERT_TRUE(fs->Read(ino, 123456, 100, buf, &n).ok());
  EXPECT_EQ(n, 0u);  // past EOF

  // The store got the right blob: content key, pinned commit, path, size and hash.
  ASSERT_TRUE(fs->Read(ino, 5, 5, buf, &n).ok());
  const BlobRef b = store_.last_read();
  EXPECT_EQ(b.key, weights_.ContentKey());
  EXPECT_EQ(b.commit, kC1);
  EXPECT_EQ(b.path, "model.safetensors");
  EXPECT_EQ(b.size, 10000u);
  EXPECT_EQ(b.hash_kind, HashKind::kSha256);
  EXPECT_EQ(b.hash, weights_.sha256);
  EXPECT_EQ(b.repo, Model("acme", "gpt"));

  const uint64_t small = Walk(*fs, "acme/gpt/config.json");
  ASSERT_TRUE(fs->Read(small, 2, 3, buf, &n).ok());
  EXPECT_EQ(std::string(buf, n), "a\":");
  EXPECT_EQ(store_.last_read().hash_kind, HashKind::kGitSha1);

  // Store errors come through; reading a dir is an error.
  store_.SetReadError(Status::Unavailable("net"));
  EXPECT_EQ(ToErrno(fs->Read(small, 0, 3, buf, &n)), EIO);
  store_.SetReadError(Status::Ok());
  EXPECT_FALSE(fs->Read(Walk(*fs, "acme/gpt"), 0, 3, buf, &n).ok());
}

TEST_F(ModelFsTest, OpenAndRelease) {
  auto fs = MakeFs();
  const uint64_t ino = Walk(*fs, "acme/gpt/config.json");
  const std::string key = config_.ContentKey();
  for (int flags :
       {O_WRONLY, O_RDWR, O_RDONLY | O_TRUNC, O_RDONLY | O_APPEND, O_WRONLY | O_CREAT}) {
    EXPECT_EQ(ToErrno(fs->Open(ino, flags)), EROFS) << flags;
  }
  EXPECT_EQ(store_.opens(key), 0);
  ASSERT_TRUE(fs->Open(ino, O_RDONLY).ok());
  ASSERT_TRUE(fs->Open(ino, O_RDONLY | O_NOFOLLOW).ok());
  EXPECT_EQ(store_.opens(key), 2);
  fs->Release(ino);
  fs->Release(ino);
  EXPECT_EQ(store_.closes(key), 2);
  EXPECT_FALSE(fs->Open(Walk(*fs, "acme/gpt/sub"), O_RDONLY).ok());
  EXPECT_EQ(ToErrno(fs->Open(424242, O_RDONLY)), ENOENT);
}

TEST_F(ModelFsTest, OpeningAShardedCheckpointsIndexHintsALoadOfItsFirstShard) {
  const RepoId llm = Model("acme", "llm");
  hub_.AddRepo(llm);
  hub_.SetRef(llm, "main", kC1);
  hub_.SetTree(llm, kC1,
               {store_.MakeFile("model.safetensors.index.json", "{}"),
                store_.MakeFile("model-00002-of-00002.safetensors", "two", true),
                store_.MakeFile("model-00001-of-00002.safetensors", "one", true),
                store_.MakeFile("model.safetensors", "unsharded", true),
                store_.MakeFile("tokenizer.json", "{}")});
  auto fs = MakeFs();
  ASSERT_TRUE(fs->Open(Walk(*fs, "acme/llm/tokenizer.json"), O_RDONLY).ok());
  ASSERT_TRUE(fs->Open(Walk(*fs, "acme/llm/model-00001-of-00002.safetensors"), O_RDONLY).ok());
  EXPECT_TRUE(store_.load_hints().empty());  // only an index says a loader of the model came
  ASSERT_TRUE(fs->Open(Walk(*fs, "acme/llm/model.safetensors.index.json"), O_RDONLY).ok());
  EXPECT_EQ(store_.load_hints(), std::vector<std::string>{"model-00001-of-00002.safetensors"});
}

TEST_F(ModelFsTest, AReaderGivenBytesOfAFileThatThenFailedItsHashGetsErrorsNeverEof) {
  auto fs = MakeFs();
  const uint64_t ino = Walk(*fs, "acme/gpt/config.json");
  const std::string key = config_.ContentKey();
  uint64_t given = 0, idle = 0, fresh = 0;
  ASSERT_TRUE(fs->Open(ino, O_RDONLY, &given).ok());
  ASSERT_TRUE(fs->Open(ino, O_RDONLY, &idle).ok());
  ASSERT_NE(given, 0u);
  ASSERT_NE(idle, given);
  char buf[4];
  size_t n = 0;
  ASSERT_TRUE(fs->Read(ino, 0, sizeof buf, buf, &n, given).ok());
  ASSERT_EQ(n, sizeof buf);
  store_.FailHash(key);
  // The reader that was given bytes: an error for any later read, at or past the end too.
  EXPECT_EQ(ToErrno(fs->Read(ino, 0, sizeof buf, buf, &n, given)), EIO);
  EXPECT_EQ(ToErrno(fs->Read(ino, config_.size, sizeof buf, buf, &n, given)), EIO);
  EXPECT_EQ(ToErrno(fs->Read(ino, config_.size + 100, sizeof buf, buf, &n, given)), EIO);
  // A reader that had opened but read nothing, and one that opens now, read the file.
  EXPECT_TRUE(fs->Read(ino, 0, sizeof buf, buf, &n, idle).ok());
  EXPECT_EQ(n, sizeof buf);
  ASSERT_TRUE(fs->Open(ino, O_RDONLY, &fresh).ok());
  EXPECT_TRUE(fs->Read(ino, 0, sizeof buf, buf, &n, fresh).ok());
  // Without a handle (internal readers) nothing is remembered.
  EXPECT_TRUE(fs->Read(ino, 0, sizeof buf, buf, &n).ok());
  fs->Release(ino, given);
  fs->Release(ino, idle);
  fs->Release(ino, fresh);
  EXPECT_EQ(store_.closes(key), 3);
}

TEST_F(ModelFsTest, TheKernelKeepsItsPagesOfAFileAcrossOpensOnlyOnceTheFileIsVerified) {
  auto fs = MakeFs();
  const uint64_t ino = Walk(*fs, "acme/gpt/config.json");
  uint64_t fh = 0;
  bool keep = true;
  ASSERT_TRUE(fs->Open(ino, O_RDONLY, &fh, &keep).ok());
  EXPECT_FALSE(keep);  // pages an earlier reader got of unverified bytes are dropped at open
  fs->Release(ino, fh);
  store_.MarkVerified(config_.ContentKey());
  ASSERT_TRUE(fs->Open(ino, O_RDONLY, &fh, &keep).ok());
  EXPECT_TRUE(keep);
  fs->Release(ino, fh);
}

TEST_F(ModelFsTest, AReaderOfAWholeFileGetsItsLastBytesOnlyOnceTheStoreJudgedTheFile) {
  auto fs = MakeFs();
  const uint64_t ino = Walk(*fs, "acme/gpt/config.json");
  const std::string key = config_.ContentKey();
  const uint64_t size = config_.size;
  ASSERT_GE(size, 4u);
  std::vector<char> buf(size);
  size_t n = 0;
  // A reader of the head and the tail (not all of the file): its last bytes are not held back.
  uint64_t lazy = 0;
  ASSERT_TRUE(fs->Open(ino, O_RDONLY, &lazy).ok());
  ASSERT_TRUE(fs->Read(ino, 0, 1, buf.data(), &n, lazy).ok());
  ASSERT_TRUE(fs->Read(ino, size - 1, 1, buf.data(), &n, lazy).ok());
  EXPECT_EQ(store_.completes(key), 0);
  // A reader of every byte, in two reads out of order then the last: the store is asked to judge
  // the file before the last read, and its failure is the reader's EIO.
  store_.FailHashOnComplete(key);
  uint64_t whole = 0;
  ASSERT_TRUE(fs->Open(ino, O_RDONLY, &whole).ok());
  const uint64_t half = size / 2;
  ASSERT_TRUE(fs->Read(ino, 1, half - 1, buf.data(), &n, whole).ok());
  ASSERT_TRUE(fs->Read(ino, 0, 1, buf.data(), &n, whole).ok());
  EXPECT_EQ(store_.completes(key), 0);
  EXPECT_EQ(ToErrno(fs->Read(ino, half, size - half, buf.data(), &n, whole)), EIO);
  EXPECT_EQ(store_.completes(key), 1);
  fs->Release(ino, lazy);
  fs->Release(ino, whole);
}

// Runs `lookup` on n threads while the hub holds resolutions at its gate, and lets the gate open
// only once one lookup is at the hub and the other n - 1 have joined its flight, so a test of the
// single flight sees every lookup overlap, whatever the scheduler does. False if that state was
// not reached within the gate's bounds (the threads are joined either way).
bool RunWhileOneResolutionIsHeld(FakeHubApi& hub, const ModelFs& fs, int n,
                                 const std::function<void(int)>& lookup) {
  const uint64_t joined0 = fs.JoinedFlights();
  hub.HoldResolves();
  std::vector<std::thread> threads;
  for (int i = 0; i < n; ++i) threads.emplace_back(lookup, i);
  bool overlapped = hub.WaitResolvesHeld(1);
  // JoinedFlights can only be polled; the deadline turns a broken single flight into a failure.
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
  while (overlapped && fs.JoinedFlights() - joined0 < static_cast<uint64_t>(n - 1)) {
    if (std::chrono::steady_clock::now() > deadline) overlapped = false;
    std::this_thread::yield();
  }
  overlapped = overlapped && hub.held_resolves() == 1;
  hub.ReleaseResolves();
  for (auto& t : threads) t.join();
  return overlapped;
}

TEST_F(ModelFsTest, ConcurrentFirstLookupsCallHubOnce) {
  auto fs = MakeFs();
  const uint64_t org = Walk(*fs, "acme");
  constexpr int kThreads = 16;
  std::vector<uint64_t> inos(kThreads, 0);
  ASSERT_TRUE(RunWhileOneResolutionIsHeld(hub_, *fs, kThreads, [&](int i) {
    Result<FsEntry> e = fs->Lookup(org, "gpt");
    if (e.ok()) inos[i] = e->attr.ino;
  }));
  EXPECT_EQ(hub_.resolve_calls(), 1);
  EXPECT_EQ(hub_.list_calls(), 1);
  for (uint64_t ino : inos) EXPECT_EQ(ino, inos[0]);
  EXPECT_NE(inos[0], 0u);
}

TEST_F(ModelFsTest, ConcurrentFailuresAreSharedThenRetried) {
  auto fs = MakeFs();
  const uint64_t org = Walk(*fs, "acme");
  hub_.SetResolveError(Status::Unavailable("down"));
  constexpr int kThreads = 8;
  std::atomic<int> failures{0};
  ASSERT_TRUE(RunWhileOneResolutionIsHeld(hub_, *fs, kThreads, [&](int) {
    if (!fs->Lookup(org, "gpt").ok()) ++failures;
  }));
  EXPECT_EQ(failures.load(), kThreads);
  EXPECT_EQ(hub_.resolve_calls(), 1);  // one flight, its failure shared by all eight
  // The failure is not remembered: the next lookup asks again.
  hub_.SetResolveError(Status::Ok());
  EXPECT_TRUE(fs->Lookup(org, "gpt").ok());
  EXPECT_EQ(hub_.resolve_calls(), 2);
}

TEST_F(ModelFsTest, OtherReposAreNotBlockedBySlowOne) {
  auto fs = MakeFs();
  const uint64_t org = Walk(*fs, "acme");
  const RepoId slow = Model("acme", "slow");
  hub_.SetRef(slow, "main", kC1);
  hub_.SetTree(slow, kC1, {store_.MakeFile("s", "s")});
  hub_.HoldResolves(slow);
  std::thread t([&] { EXPECT_TRUE(fs->Lookup(org, "slow").ok()); });
  const bool held = hub_.WaitResolvesHeld(1);
  // While "slow" is held at the hub, attrs and listings answer and a second repo resolves. Had any
  // of them waited for "slow", it could only have returned once the gate gave up (10 s), and the
  // slow lookup would no longer be held.
  EXPECT_TRUE(fs->GetAttr(org).ok());
  EXPECT_TRUE(fs->ReadDir(org).ok());
  EXPECT_TRUE(fs->Lookup(org, "gpt").ok());
  EXPECT_EQ(hub_.held_resolves(), 1);
  hub_.ReleaseResolves();
  t.join();
  EXPECT_TRUE(held);
}

TEST_F(ModelFsTest, PinnedToFirstResolvedCommit) {
  auto fs = MakeFs();
  const uint64_t repo = Walk(*fs, "acme/gpt");
  const uint64_t cfg = Walk(*fs, "acme/gpt/config.json");
  EXPECT_EQ(ReadAll(*fs, cfg), "{\"a\":1}");
  // The branch moves on the hub.
  hub_.SetRef(Model("acme", "gpt"), "main", kC2);
  EXPECT_EQ(Walk(*fs, "acme/gpt"), repo);
  EXPECT_EQ(Walk(*fs, "acme/gpt/config.json"), cfg);
  EXPECT_EQ(ReadAll(*fs, cfg), "{\"a\":1}");
  EXPECT_EQ(Names(*fs, repo), (std::vector<std::string>{".", "..", "config.json", "empty",
                                                        "model.safetensors", "sub"}));
  EXPECT_EQ(store_.last_read().commit, kC1);
  EXPECT_EQ(hub_.resolve_calls(), 1);
  // A different name (same branch, spelled explicitly) is a new resolution and sees the move.
  EXPECT_EQ(ReadAll(*fs, Walk(*fs, "acme/gpt@main/config.json")), "version two");
}

TEST_F(ModelFsTest, RootListing) {
  auto fs = MakeFs();
  EXPECT_EQ(Names(*fs, ModelFs::kRootIno), (std::vector<std::string>{".", ".."}));
  Walk(*fs, "zeta");
  Walk(*fs, "acme/gpt");
  EXPECT_EQ(Names(*fs, ModelFs::kRootIno), (std::vector<std::string>{".", "..", "acme", "zeta"}));
  EXPECT_EQ(Names(*fs, Walk(*fs, "zeta")), (std::vector<std::string>{".", ".."}));
  Walk(*fs, "datasets");
  EXPECT_EQ(Names(*fs, ModelFs::kRootIno),
            (std::vector<std::string>{".", "..", "acme", "datasets", "zeta"}));
}

TEST_F(ModelFsTest, Datasets) {
  auto fs = MakeFs();
  const uint64_t ds = Walk(*fs, "datasets");
  ASSERT_NE(ds, 0u);
  EXPECT_TRUE(fs->GetAttr(ds)->is_dir());
  EXPECT_EQ(Names(*fs, ds), (std::vector<std::string>{".", ".."}));
  EXPECT_EQ(ReadAll(*fs, Walk(*fs, "datasets/acme/squad/data/train.jsonl")), "{}\n{}\n");
  EXPECT_EQ(store_.last_read().repo, Dataset("acme", "squad"));
  EXPECT_EQ(Names(*fs, ds), (std::vector<std::string>{".", "..", "acme"}));
  EXPECT_EQ(Names(*fs, Walk(*fs, "datasets/acme")), (std::vector<std::string>{".", "..", "squad"}));
  // The model org of the same name is a different dir, and the dataset is not a model.
  EXPECT_NE(Walk(*fs, "acme"), Walk(*fs, "datasets/acme"));
  Status err;
  EXPECT_EQ(Walk(*fs, "acme/squad", &err), 0u);
  EXPECT_EQ(ToErrno(err), ENOENT);
  EXPECT_EQ(Walk(*fs, "datasets/acme/gpt", &err), 0u);
  EXPECT_EQ(ToErrno(err), ENOENT);
  EXPECT_EQ(Walk(*fs, "datasets/.bad", &err), 0u);
  EXPECT_EQ(ToErrno(err), ENOENT);
}

TEST_F(ModelFsTest, SingleRepoMode) {
  FsOptions opts;
  opts.single_repo = Model("acme", "gpt");
  opts.single_rev = "v2";
  auto fs = MakeFs(opts);
  EXPECT_EQ(hub_.resolve_calls(), 0);  // nothing until Init or first access
  ASSERT_TRUE(fs->Init().ok());
  EXPECT_EQ(hub_.resolve_calls(), 1);
  EXPECT_EQ(hub_.last_rev(), "v2");
  EXPECT_EQ(Names(*fs, ModelFs::kRootIno), (std::vector<std::string>{".", "..", "config.json"}));
  EXPECT_EQ(ReadAll(*fs, Walk(*fs, "config.json")), "version two");
  EXPECT_TRUE(fs->Init().ok());
  EXPECT_EQ(hub_.resolve_calls(), 1);
  Status err;
  EXPECT_EQ(Walk(*fs, "datasets", &err), 0u);
  EXPECT_EQ(ToErrno(err), ENOENT);
  EXPECT_EQ(Walk(*fs, "acme", &err), 0u);
  EXPECT_EQ(ToErrno(err), ENOENT);
  Result<FsAttr> root = fs->GetAttr(ModelFs::kRootIno);
  ASSERT_TRUE(root.ok());
  EXPECT_TRUE(root->is_dir());
  Result<DirListing> l = fs->ReadDir(ModelFs::kRootIno);
  EXPECT_TRUE(l->immutable);
  EXPECT_EQ(l->entries[1].attr.ino, ModelFs::kRootIno);
}

TEST_F(ModelFsTest, SingleRepoModeLazyAndDefaultBranch) {
  FsOptions opts;
  opts.single_repo = Model("acme", "gpt");
  auto fs = MakeFs(opts);
  EXPECT_EQ(ReadAll(*fs, Walk(*fs, "sub/dir/tok.txt")), "nested!");
  EXPECT_EQ(hub_.resolve_calls(), 1);
  EXPECT_EQ(hub_.last_rev(), "");
}

TEST_F(ModelFsTest, SingleRepoModeBadRepoFailsInit) {
  FsOptions opts;
  opts.single_repo = Model("acme", "missing");
  auto fs = MakeFs(opts);
  EXPECT_EQ(ToErrno(fs->Init()), ENOENT);
  EXPECT_EQ(ToErrno(fs->ReadDir(ModelFs::kRootIno).status()), ENOENT);
  opts.single_repo = Model("acme", "gpt");
  opts.single_rev = "nope";
  auto fs2 = MakeFs(opts);
  EXPECT_EQ(ToErrno(fs2->Init()), ENOENT);
}

TEST_F(ModelFsTest, InodesAreUniqueAndStable) {
  auto fs = MakeFs();
  std::set<uint64_t> seen;
  for (const char* p :
       {"acme", "acme/gpt", "acme/gpt/config.json", "acme/gpt/model.safetensors", "acme/gpt/sub",
        "acme/gpt/sub/dir", "acme/gpt/sub/dir/tok.txt", "acme/gpt@v2", "acme/gpt@v2/config.json",
        "datasets", "datasets/acme", "datasets/acme/squad"}) {
    const uint64_t ino = Walk(*fs, p);
    ASSERT_NE(ino, 0u) << p;
    EXPECT_TRUE(seen.insert(ino).second) << p;
    EXPECT_EQ(Walk(*fs, p), ino) << p;
  }
  EXPECT_GE(fs->InodeCount(), seen.size() + 1);
}

// ---- Hub-cache layout (FsLayout::kHfCache) ----

class HfCacheLayoutTest : public ModelFsTest {
 protected:
  std::unique_ptr<ModelFs> MakeHfFs() {
    FsOptions o;
    o.layout = FsLayout::kHfCache;
    return MakeFs(o);
  }
};

TEST_F(HfCacheLayoutTest, FolderNames) {
  RepoId r;
  ASSERT_TRUE(ModelFs::ParseHfCacheDirName("models--acme--gpt", &r));
  EXPECT_EQ(r, Model("acme", "gpt"));
  ASSERT_TRUE(ModelFs::ParseHfCacheDirName("datasets--acme--squad.v2", &r));
  EXPECT_EQ(r, Dataset("acme", "squad.v2"));
  for (const char* bad : {"models--acme", "models--acme--", "models----gpt", "spaces--a--b",
                          "models--a--b--c", "acme", "models--a--.b", ".locks", "CACHEDIR.TAG"}) {
    EXPECT_FALSE(ModelFs::ParseHfCacheDirName(bad, &r)) << bad;
  }
}

TEST_F(HfCacheLayoutTest, RepoFolderRefsSnapshotsBlobs) {
  auto fs = MakeHfFs();
  EXPECT_EQ(Names(*fs, ModelFs::kRootIno), (std::vector<std::string>{".", ".."}));
  const uint64_t repo = Walk(*fs, "models--acme--gpt");
  ASSERT_NE(repo, 0u);
  EXPECT_EQ(Names(*fs, repo), (std::vector<std::string>{".", "..", "blobs", "refs", "snapshots"}));
  EXPECT_EQ(Names(*fs, ModelFs::kRootIno),
            (std::vector<std::string>{".", "..", "models--acme--gpt"}));
  EXPECT_EQ(hub_.last_rev(), "main");  // huggingface_hub's default revision
  EXPECT_EQ(hub_.resolve_calls(), 1);   // one resolution pins refs/main and its snapshot
  EXPECT_EQ(hub_.list_calls(), 1);

  // refs/main: exactly the commit, no newline.
  const uint64_t ref = Walk(*fs, "models--acme--gpt/refs/main");
  ASSERT_NE(ref, 0u);
  EXPECT_EQ(ReadAll(*fs, ref), kC1);
  EXPECT_EQ(fs->GetAttr(ref)->size, 40u);
  EXPECT_FALSE(fs->GetAttr(ref)->is_dir());
  EXPECT_TRUE(fs->Open(ref, O_RDONLY).ok());
  fs->Release(ref);
  EXPECT_FALSE(fs->Open(ref, O_WRONLY).ok());

  // snapshots/<commit>/ is the pinned tree.
  EXPECT_EQ(Names(*fs, Walk(*fs, "models--acme--gpt/snapshots")),
            (std::vector<std::string>{".", "..", kC1}));
  const uint64_t cfg = Walk(*fs, "models--acme--gpt/snapshots/" + kC1 + "/config.json");
  ASSERT_NE(cfg, 0u);
  EXPECT_EQ(ReadAll(*fs, cfg), "{\"a\":1}");
  EXPECT_EQ(ReadAll(*fs, Walk(*fs, "models--acme--gpt/snapshots/" + kC1 + "/sub/dir/tok.txt")),
            "nested!");

  // blobs/<etag>: LFS files by SHA-256, others by git blob id, same bytes.
  const uint64_t blobs = Walk(*fs, "models--acme--gpt/blobs");
  std::vector<std::string> names = Names(*fs, blobs);
  std::set<std::string> got(names.begin() + 2, names.end());
  EXPECT_EQ(got, (std::set<std::string>{config_.git_oid, weights_.sha256, nested_.git_oid}));
  EXPECT_EQ(ReadAll(*fs, Walk(*fs, "models--acme--gpt/blobs/" + weights_.sha256)),
            std::string(10000, 'w'));
  EXPECT_EQ(ReadAll(*fs, Walk(*fs, "models--acme--gpt/blobs/" + config_.git_oid)), "{\"a\":1}");
}

TEST_F(HfCacheLayoutTest, OtherRefsAndSnapshotsAppearOnLookup) {
  auto fs = MakeHfFs();
  ASSERT_NE(Walk(*fs, "models--acme--gpt"), 0u);
  // A tag: refs/v2 resolves it and pins its snapshot; its blobs join blobs/.
  const uint64_t v2 = Walk(*fs, "models--acme--gpt/refs/v2");
  ASSERT_NE(v2, 0u);
  EXPECT_EQ(ReadAll(*fs, v2), kC2);
  EXPECT_EQ(ReadAll(*fs, Walk(*fs, "models--acme--gpt/snapshots/" + kC2 + "/config.json")),
            "version two");
  EXPECT_EQ(Names(*fs, Walk(*fs, "models--acme--gpt/refs")),
            (std::vector<std::string>{".", "..", "main", "v2"}));
  // A commit looked up directly under snapshots/ (the PR's commit, no ref for it).
  EXPECT_EQ(ReadAll(*fs, Walk(*fs, "models--acme--gpt/snapshots/" + kPr + "/README.md")),
            "pr readme");
  EXPECT_EQ(Names(*fs, Walk(*fs, "models--acme--gpt/snapshots")).size(), 5u);
  // Short or unknown commits, unknown refs, nested refs: ENOENT.
  Status err;
  EXPECT_EQ(Walk(*fs, "models--acme--gpt/snapshots/" + kC1.substr(0, 12), &err), 0u);
  EXPECT_EQ(ToErrno(err), ENOENT) << err.ToString();
  EXPECT_EQ(Walk(*fs, "models--acme--gpt/snapshots/" + std::string(40, 'f'), &err), 0u);
  EXPECT_EQ(ToErrno(err), ENOENT) << err.ToString();
  EXPECT_EQ(Walk(*fs, "models--acme--gpt/refs/nope", &err), 0u);
  EXPECT_EQ(ToErrno(err), ENOENT) << err.ToString();
  EXPECT_EQ(Walk(*fs, "models--acme--gpt/refs/refs", &err), 0u);
}

TEST_F(HfCacheLayoutTest, MissingThingsAreNotFound) {
  auto fs = MakeHfFs();
  Status err;
  for (const char* p : {"models--acme--nope", "acme", "datasets", "models--acme--gpt/.no_exist",
                        "models--acme--gpt/trees", "models--acme--gpt/blobs/abc",
                        "CACHEDIR.TAG", ".locks"}) {
    EXPECT_EQ(Walk(*fs, p, &err), 0u) << p;
    EXPECT_EQ(ToErrno(err), ENOENT) << p << ": " << err.ToString();
  }
  // The failed repo is not listed (gpt is: its .no_exist/trees probes resolved it), and the next
  // lookup asks the hub again.
  EXPECT_EQ(Names(*fs, ModelFs::kRootIno),
            (std::vector<std::string>{".", "..", "models--acme--gpt"}));
  const int calls = hub_.resolve_calls();
  EXPECT_EQ(Walk(*fs, "models--acme--nope", &err), 0u);
  EXPECT_EQ(hub_.resolve_calls(), calls + 1);
}

TEST_F(HfCacheLayoutTest, Datasets) {
  auto fs = MakeHfFs();
  EXPECT_EQ(ReadAll(*fs, Walk(*fs, "datasets--acme--squad/refs/main")), kC1);
  const uint64_t f = Walk(*fs, "datasets--acme--squad/snapshots/" + kC1 + "/data/train.jsonl");
  ASSERT_NE(f, 0u);
  EXPECT_EQ(ReadAll(*fs, f), "{}\n{}\n");
  char buf[4];
  size_t n;
  ASSERT_TRUE(fs->Read(f, 0, 2, buf, &n).ok());
  EXPECT_EQ(store_.last_read().repo, Dataset("acme", "squad"));
  Status err;
  EXPECT_EQ(Walk(*fs, "models--acme--squad", &err), 0u);  // a dataset is not a model
}

TEST_F(HfCacheLayoutTest, ConcurrentFirstLookupsShareOneResolution) {
  auto fs = MakeHfFs();
  std::atomic<int> ok{0};
  ASSERT_TRUE(RunWhileOneResolutionIsHeld(hub_, *fs, 8, [&](int) {
    if (Walk(*fs, "models--acme--gpt/refs/main") != 0) ok++;
  }));
  EXPECT_EQ(ok.load(), 8);
  EXPECT_EQ(hub_.list_calls(), 1);
  EXPECT_EQ(Names(*fs, Walk(*fs, "models--acme--gpt/snapshots")).size(), 3u);
  EXPECT_EQ(Names(*fs, Walk(*fs, "models--acme--gpt/refs")).size(), 3u);
}

TEST(FirstShardNameTest, NamesTheFirstShardOfTheCheckpointAnIndexDescribes) {
  const std::vector<std::string> names = {"config.json", "model-00002-of-00003.safetensors",
                                          "model-00001-of-00003.safetensors", "model-00003-of-00003.safetensors",
                                          "model.safetensors.index.json", "pytorch_model-1-of-2.bin",
                                          "pytorch_model-2-of-2.bin"};
  EXPECT_EQ(FirstShardName("model.safetensors.index.json", names), "model-00001-of-00003.safetensors");
  EXPECT_EQ(FirstShardName("pytorch_model.bin.index.json", names), "pytorch_model-1-of-2.bin");
  EXPECT_EQ(FirstShardName("model.safetensors", names), "");               // not an index
  EXPECT_EQ(FirstShardName("other.safetensors.index.json", names), "");    // no shard of it
  EXPECT_EQ(FirstShardName("model.safetensors.index.json", {"model-001-of-00003.safetensors"}), "");  // widths
  EXPECT_EQ(FirstShardName("model.safetensors.index.json", {"model-00002-of-00003.safetensors"}), "");
  EXPECT_EQ(FirstShardName("model.safetensors.index.json", {"model-0x001-of-00003.safetensors"}), "");
  EXPECT_EQ(FirstShardName(".index.json", names), "");
}

TEST(NextShardNameTest, NamesTheNextShardOfAShardedCheckpoint) {
  EXPECT_EQ(NextShardName("model-00001-of-00004.safetensors"), "model-00002-of-00004.safetensors");
  EXPECT_EQ(NextShardName("pytorch_model-00009-of-00012.bin"), "pytorch_model-00010-of-00012.bin");
  EXPECT_EQ(NextShardName("diffusion_pytorch_model-1-of-2.safetensors"), "diffusion_pytorch_model-2-of-2.safetensors");
  EXPECT_EQ(NextShardName("model-00004-of-00004.safetensors"), "");  // the last
  EXPECT_EQ(NextShardName("model.safetensors"), "");
  EXPECT_EQ(NextShardName("model-001-of-00004.safetensors"), "");  // widths differ
  EXPECT_EQ(NextShardName("00001-of-00004.safetensors"), "");      // no stem
  EXPECT_EQ(NextShardName("model-x1-of-00004.safetensors"), "");
  EXPECT_EQ(NextShardName("model-99-of-99"), "");
}

}  // namespace
}  // namespace modelfs
