// ModelFs, the hub-cache layout (FsLayout::kHfCache, see fs/model_fs.h): the folder names
// (models--ORG--NAME), the lookups below the root and in a repo's refs/ and snapshots/ dirs, and the
// blobs/<etag> entries a new snapshot adds. The pinned trees themselves are built and published by
// the shared code in fs/model_fs.cc (FetchAndPublish, BuildTree), as in the plain layout.
#include "fs/model_fs.h"

#include <mutex>
#include <utility>

#include "common/log.h"
#include "fs/model_fs_internal.h"

namespace modelfs {

bool ModelFs::ParseHfCacheDirName(const std::string& entry, RepoId* repo) {
  std::string rest;
  if (entry.rfind("models--", 0) == 0) {
    repo->type = "model";
    rest = entry.substr(8);
  } else if (entry.rfind("datasets--", 0) == 0) {
    repo->type = "dataset";
    rest = entry.substr(10);
  } else {
    return false;
  }
  // Hub names never contain "--", so the one separator is unambiguous.
  const size_t sep = rest.find("--");
  if (sep == std::string::npos) return false;
  repo->ns = rest.substr(0, sep);
  repo->name = rest.substr(sep + 2);
  return IsValidHubName(repo->ns) && IsValidHubName(repo->name);
}

uint64_t ModelFs::HfChildLocked(uint64_t repo_ino, const std::string& name) const {
  return FindLocked(repo_ino)->children.at(name);  // refs, snapshots, blobs: made with the repo dir
}

Result<uint64_t> ModelFs::LookupHfRepo(const std::string& name) {
  RepoId repo;
  if (!ParseHfCacheDirName(name, &repo)) return Status::NotFound("not a hub cache folder: " + name);
  return SingleFlight(kRootIno, name, [&]() -> Result<uint64_t> {
    // huggingface_hub's default revision is the branch "main" (constants.DEFAULT_REVISION), so the
    // repo dir exists when that branch does, and refs/main is there from the start.
    Result<std::string> commit = hub_.ResolveRevision(repo, "main");
    if (!commit.ok()) {
      MODELFS_LOG(kWarn, "%s %s@main: %s", repo.type.c_str(), repo.Id().c_str(),
                  commit.status().ToString().c_str());
      return commit.status();
    }
    // The repo dir and its three fixed children go into nodes_ now but are reachable by name only
    // once the root's children map gets the repo dir, after refs/main exists.
    uint64_t repo_ino = next_ino_.fetch_add(1), snapshots_ino = 0;
    {
      std::unique_lock lock(table_mu_);
      auto dir = std::make_unique<Node>();
      dir->ino = repo_ino;
      dir->parent = kRootIno;
      dir->kind = Kind::kHfRepo;
      dir->name = name;
      dir->repo = repo;
      for (auto [child, kind] : {std::pair{"blobs", Kind::kHfBlobs}, {"refs", Kind::kHfRefs},
                                 {"snapshots", Kind::kHfSnapshots}}) {
        auto c = std::make_unique<Node>();
        c->ino = next_ino_.fetch_add(1);
        c->parent = repo_ino;
        c->kind = kind;
        c->name = child;
        c->repo = repo;
        dir->children.emplace(child, c->ino);
        if (kind == Kind::kHfSnapshots) snapshots_ino = c->ino;
        nodes_.emplace(c->ino, std::move(c));
      }
      nodes_.emplace(repo_ino, std::move(dir));
    }
    Result<uint64_t> snap = ResolveRepoDir(snapshots_ino, *commit, repo, *commit, true);
    if (!snap.ok()) return snap.status();  // the unreachable nodes stay: inodes are never freed
    uint64_t refs_ino;
    {
      std::shared_lock lock(table_mu_);
      refs_ino = HfChildLocked(repo_ino, "refs");
    }
    Result<uint64_t> ref = LookupHfRef(refs_ino, "main", *commit);
    if (!ref.ok()) return ref.status();
    std::unique_lock lock(table_mu_);
    nodes_.at(kRootIno)->children.emplace(name, repo_ino);
    return repo_ino;
  });
}

Result<uint64_t> ModelFs::LookupHfRef(uint64_t refs_ino, const std::string& name,
                                      const std::string& known_commit) {
  std::string rev;
  std::string repo_name;
  // Same rules as a "repo@rev" suffix; "/" cannot occur in one name, so nested refs never match.
  if (!ParseRepoDirName("x@" + name, &repo_name, &rev) || rev.find('/') != std::string::npos) {
    return Status::NotFound("not a revision: " + name);
  }
  RepoId repo;
  uint64_t snapshots_ino;
  {
    std::shared_lock lock(table_mu_);
    const Node* refs = FindLocked(refs_ino);
    repo = refs->repo;
    snapshots_ino = HfChildLocked(refs->parent, "snapshots");
  }
  return SingleFlight(refs_ino, name, [&]() -> Result<uint64_t> {
    Result<std::string> commit =
        known_commit.empty() ? hub_.ResolveRevision(repo, rev) : Result<std::string>(known_commit);
    if (!commit.ok()) return commit.status();
    Result<uint64_t> snap = ResolveRepoDir(snapshots_ino, *commit, repo, *commit, true);
    if (!snap.ok()) return snap.status();
    auto f = std::make_unique<Node>();
    f->ino = next_ino_.fetch_add(1);
    f->parent = refs_ino;
    f->kind = Kind::kRefFile;
    f->name = name;
    f->data = *commit;  // huggingface_hub reads it with f.read() and does not strip a newline
    const uint64_t ino = f->ino;
    std::unique_lock lock(table_mu_);
    nodes_.at(refs_ino)->children.emplace(name, ino);
    nodes_.emplace(ino, std::move(f));
    return ino;
  });
}

Result<uint64_t> ModelFs::LookupHfSnapshot(uint64_t snapshots_ino, const std::string& name) {
  // Only full commits name snapshots (huggingface_hub writes snapshots/<40-hex> and nothing else).
  static constexpr size_t kCommitHexLen = 40;
  if (name.size() != kCommitHexLen ||
      name.find_first_not_of("0123456789abcdef") != std::string::npos) {
    return Status::NotFound("not a commit: " + name);
  }
  RepoId repo;
  {
    std::shared_lock lock(table_mu_);
    repo = FindLocked(snapshots_ino)->repo;
  }
  return SingleFlight(snapshots_ino, name, [&]() -> Result<uint64_t> {
    Result<std::string> commit = hub_.ResolveRevision(repo, name);
    if (!commit.ok()) return commit.status();
    if (*commit != name) return Status::NotFound("not a commit: " + name);
    return FetchAndPublish(snapshots_ino, name, repo, name, true);
  });
}

void ModelFs::AddHfBlobsLocked(uint64_t snapshots_ino, const RepoId& repo, const std::string& commit,
                               const std::vector<FileEntry>& entries) {
  // Every file of a new snapshot is also blobs/<etag>. Two files (in this or an earlier snapshot)
  // with one etag have the same bytes, so the first node stays.
  Node* blobs = nodes_.at(HfChildLocked(nodes_.at(snapshots_ino)->parent, "blobs")).get();
  for (const FileEntry& e : entries) {
    if (e.is_dir || blobs->children.count(e.expected_hash()) != 0) continue;
    auto b = std::make_unique<Node>();
    b->ino = next_ino_.fetch_add(1);
    b->parent = blobs->ino;
    b->kind = Kind::kFile;
    b->name = e.expected_hash();
    b->blob = BlobRef::For(repo, commit, e);
    blobs->children.emplace(b->name, b->ino);
    nodes_.emplace(b->ino, std::move(b));
  }
}

}  // namespace modelfs
