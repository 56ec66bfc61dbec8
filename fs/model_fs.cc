#include "fs/model_fs.h"

#include "common/log.h"

#include <fcntl.h>
#include <sys/stat.h>

#include <cctype>
#include <chrono>
#include <cstring>
#include <mutex>
#include <utility>

namespace modelfs {

namespace {

// Modes: everything is read-only for everyone; default_permissions makes the kernel enforce it.
constexpr uint32_t kDirMode = S_IFDIR | 0555;
constexpr uint32_t kFileMode = S_IFREG | 0444;

// st_blksize (bytes). The kernel turns a FUSE blksize into the inode's i_blkbits, which its page
// cache and iomap code assume is at most the page size, so stay at 4 KiB rather than advertise the
// 1 MiB FUSE read size; readahead, not stdio buffer size, is what makes large sequential reads.
constexpr uint32_t kBlkSize = 4096;

// Longest hub namespace or repo name (the hub's own limit).
constexpr size_t kMaxHubNameLen = 96;
// Longest revision we pass on: branch and tag names are git refs, commits are 40 hex. Anything this
// long is not a revision, and a kernel name is at most 255 bytes anyway.
constexpr size_t kMaxRevLen = 255;

bool IsWordChar(char c) {
  return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_';
}

bool IsAlnum(char c) { return IsWordChar(c) && c != '_'; }

}  // namespace

struct ModelFs::Node {
  uint64_t ino = 0;
  uint64_t parent = 0;
  Kind kind = Kind::kDir;
  std::string name;
  // Dirs: name -> ino, sorted so readdir order is stable. Grows for kRoot/kDatasets/kOrg (under
  // table_mu_ exclusive); fixed once published for kRepo/kDir.
  std::map<std::string, uint64_t> children;
  std::string repo_type;  // kOrg: "model" or "dataset"
  BlobRef blob;           // kFile: what to read (size in blob.size)
  RepoId repo;            // kHfRepo, kHfRefs, kHfSnapshots, kHfBlobs: the repo they belong to
  std::string data;       // kRefFile: the whole content (a 40-hex commit, no newline)
};

bool FsAttr::is_dir() const { return S_ISDIR(mode); }

ModelFs::ModelFs(FsOptions opts, HubApi& hub, BlobStore& store)
    : opts_(std::move(opts)), hub_(hub), store_(store), single_(opts_.single_repo.has_value()) {
  const auto now = std::chrono::system_clock::now().time_since_epoch();
  const auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(now).count();
  mount_sec_ = ns / 1000000000;
  mount_nsec_ = static_cast<uint32_t>(ns % 1000000000);

  auto root = std::make_unique<Node>();
  root->ino = kRootIno;
  root->parent = kRootIno;
  root->kind = Kind::kRoot;
  nodes_.emplace(kRootIno, std::move(root));
  if (!single_) {
    auto ds = std::make_unique<Node>();
    ds->ino = kDatasetsIno;
    ds->parent = kRootIno;
    ds->kind = Kind::kDatasets;
    ds->name = "datasets";
    nodes_.emplace(kDatasetsIno, std::move(ds));
  }
}

ModelFs::~ModelFs() { SetContentInvalidator(nullptr); }

void ModelFs::SetContentInvalidator(std::function<void(uint64_t ino)> fn) {
  if (!fn) {
    store_.SetInvalidateCallback(nullptr);  // waits for a running call
    return;
  }
  store_.SetInvalidateCallback([this, fn = std::move(fn)](const std::string& key) {
    for (uint64_t ino : InodesWithContent(key)) fn(ino);
  });
}

std::vector<uint64_t> ModelFs::InodesWithContent(const std::string& key) const {
  std::vector<uint64_t> out;
  std::shared_lock lock(table_mu_);
  for (const auto& [ino, n] : nodes_) {
    if (n->kind == Kind::kFile && n->blob.key == key) out.push_back(ino);
  }
  return out;
}

bool ModelFs::IsValidHubName(const std::string& name) {
  if (name.empty() || name.size() > kMaxHubNameLen || !IsAlnum(name[0])) return false;
  for (char c : name) {
    if (!IsWordChar(c) && c != '.' && c != '-') return false;
  }
  return name.find("--") == std::string::npos && name.find("..") == std::string::npos;
}

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

std::string ModelFs::HfCacheDirName(const RepoId& repo) {
  return repo.type + "s--" + repo.ns + "--" + repo.name;
}

bool ModelFs::ParseRepoDirName(const std::string& entry, std::string* repo_name, std::string* rev) {
  const size_t at = entry.find('@');
  *repo_name = entry.substr(0, at);
  rev->clear();
  if (!IsValidHubName(*repo_name)) return false;
  if (at == std::string::npos) return true;  // default branch
  const std::string raw = entry.substr(at + 1);
  if (raw.empty()) return false;  // "name@" names nothing
  // Only "%2F" is decoded: it is the one character a ref needs that a file name cannot hold.
  for (size_t i = 0; i < raw.size(); ++i) {
    if (raw[i] == '%' && i + 2 < raw.size() && raw[i + 1] == '2' &&
        (raw[i + 2] == 'F' || raw[i + 2] == 'f')) {
      rev->push_back('/');
      i += 2;
    } else {
      rev->push_back(raw[i]);
    }
  }
  if (rev->size() > kMaxRevLen) return false;
  for (char c : *rev) {
    if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f || c == ' ') return false;
  }
  // git forbids these in ref names; rejecting them here keeps odd paths away from the hub URLs.
  if (rev->find("..") != std::string::npos || rev->front() == '/' || rev->back() == '/' ||
      rev->find("//") != std::string::npos) {
    return false;
  }
  return true;
}

Status ModelFs::Init() {
  if (!single_) return Status::Ok();
  return EnsureSingleRepo();
}

const ModelFs::Node* ModelFs::FindLocked(uint64_t ino) const {
  auto it = nodes_.find(ino);
  return it == nodes_.end() ? nullptr : it->second.get();
}

std::optional<uint64_t> ModelFs::FindChildLocked(uint64_t parent, const std::string& name) const {
  if (single_ && parent == kRootIno && name.empty()) {
    return root_ready_ ? std::optional<uint64_t>(kRootIno) : std::nullopt;
  }
  const Node* p = FindLocked(parent);
  if (p == nullptr) return std::nullopt;
  auto it = p->children.find(name);
  if (it == p->children.end()) return std::nullopt;
  return it->second;
}

FsAttr ModelFs::AttrOfLocked(const Node& n) const {
  FsAttr a;
  a.ino = n.ino;
  a.uid = opts_.uid;
  a.gid = opts_.gid;
  a.time_sec = mount_sec_;
  a.time_nsec = mount_nsec_;
  a.blksize = kBlkSize;
  if (n.kind == Kind::kFile || n.kind == Kind::kRefFile) {
    const uint64_t size = n.kind == Kind::kFile ? n.blob.size : n.data.size();
    a.mode = kFileMode;
    a.nlink = 1;
    a.size = size;
    a.blocks = (size + 511) / 512;
  } else {
    a.mode = kDirMode;
    a.nlink = 2;
  }
  return a;
}

FsEntry ModelFs::EntryOf(const FsAttr& a) const {
  return FsEntry{a, opts_.entry_timeout_s, opts_.attr_timeout_s};
}

uint64_t ModelFs::InodeCount() const {
  std::shared_lock lock(table_mu_);
  return nodes_.size();
}

std::string ModelFs::PathOf(uint64_t ino) const {
  std::shared_lock lock(table_mu_);
  std::string path;
  // Bounded walk: parents always exist and lead to the root, but a log line must never loop.
  for (int depth = 0; ino != kRootIno && depth < 4096; ++depth) {
    const Node* n = FindLocked(ino);
    if (n == nullptr) return "<inode " + std::to_string(ino) + ">" + path;
    path = "/" + n->name + path;
    ino = n->parent;
  }
  return path.empty() ? "/" : path;
}

Result<FsAttr> ModelFs::GetAttr(uint64_t ino) {
  std::shared_lock lock(table_mu_);
  const Node* n = FindLocked(ino);
  if (n == nullptr) return Status::NotFound("no inode " + std::to_string(ino));
  return AttrOfLocked(*n);
}

Status ModelFs::EnsureSingleRepo() {
  {
    std::shared_lock lock(table_mu_);
    if (root_ready_) return Status::Ok();
  }
  Result<uint64_t> r = ResolveRepoDir(kRootIno, "", *opts_.single_repo, opts_.single_rev);
  return r.status();
}

Result<FsEntry> ModelFs::Lookup(uint64_t parent, const std::string& name) {
  if (single_ && parent == kRootIno) {
    Status s = EnsureSingleRepo();
    if (!s.ok()) return s;
  }
  Kind kind;
  std::string org_ns, org_type;
  {
    std::shared_lock lock(table_mu_);
    const Node* p = FindLocked(parent);
    if (p == nullptr) return Status::NotFound("no inode " + std::to_string(parent));
    if (p->kind == Kind::kFile || p->kind == Kind::kRefFile) {
      return Status::NotFound("not a directory");
    }
    auto it = p->children.find(name);
    if (it != p->children.end()) {
      const Node* n = FindLocked(it->second);
      // A looked-up file is likely to be opened: the store may resolve where to read it now.
      // (Nodes are immutable once created; the store never blocks here.)
      if (n->kind == Kind::kFile) store_.PrepareBlob(n->blob);
      return EntryOf(AttrOfLocked(*n));
    }
    kind = p->kind;
    org_ns = p->name;
    org_type = p->repo_type;
  }
  // Not there yet: only the growing dirs can create it.
  if (opts_.layout == FsLayout::kHfCache) {
    Result<uint64_t> ino = Status::NotFound("no such entry: " + name);
    if (kind == Kind::kRoot) ino = LookupHfRepo(name);
    if (kind == Kind::kHfRefs) ino = LookupHfRef(parent, name);
    if (kind == Kind::kHfSnapshots) ino = LookupHfSnapshot(parent, name);
    if (!ino.ok()) return ino.status();
    Result<FsAttr> a = GetAttr(*ino);
    if (!a.ok()) return a.status();
    return EntryOf(*a);
  }
  switch (kind) {
    case Kind::kRoot: {
      if (name == "datasets") {
        std::unique_lock lock(table_mu_);
        Node* root = nodes_.at(kRootIno).get();
        root->children.emplace("datasets", kDatasetsIno);
        return EntryOf(AttrOfLocked(*nodes_.at(kDatasetsIno)));
      }
      if (!IsValidHubName(name)) return Status::NotFound("not a hub namespace: " + name);
      Result<uint64_t> org = GetOrCreateOrg(kRootIno, name, "model");
      if (!org.ok()) return org.status();
      Result<FsAttr> a = GetAttr(*org);
      if (!a.ok()) return a.status();
      return EntryOf(*a);
    }
    case Kind::kDatasets: {
      if (!IsValidHubName(name)) return Status::NotFound("not a hub namespace: " + name);
      Result<uint64_t> org = GetOrCreateOrg(kDatasetsIno, name, "dataset");
      if (!org.ok()) return org.status();
      Result<FsAttr> a = GetAttr(*org);
      if (!a.ok()) return a.status();
      return EntryOf(*a);
    }
    case Kind::kOrg: {
      std::string repo_name, rev;
      if (!ParseRepoDirName(name, &repo_name, &rev)) {
        return Status::NotFound("not a repo name: " + name);
      }
      RepoId repo;
      repo.type = org_type;
      repo.ns = org_ns;
      repo.name = repo_name;
      Result<uint64_t> ino = ResolveRepoDir(parent, name, repo, rev);
      if (!ino.ok()) return ino.status();
      Result<FsAttr> a = GetAttr(*ino);
      if (!a.ok()) return a.status();
      return EntryOf(*a);
    }
    default:  // pinned trees are complete; the kHf* kinds only exist in the hub-cache layout
      break;
  }
  return Status::NotFound("no such entry: " + name);
}

Result<uint64_t> ModelFs::GetOrCreateOrg(uint64_t parent, const std::string& ns,
                                         const std::string& type) {
  std::unique_lock lock(table_mu_);
  Node* p = nodes_.at(parent).get();
  auto it = p->children.find(ns);
  if (it != p->children.end()) return it->second;
  auto org = std::make_unique<Node>();
  org->ino = next_ino_.fetch_add(1);
  org->parent = parent;
  org->kind = Kind::kOrg;
  org->name = ns;
  org->repo_type = type;
  const uint64_t ino = org->ino;
  p->children.emplace(ns, ino);
  nodes_.emplace(ino, std::move(org));
  return ino;
}

Result<uint64_t> ModelFs::ResolveRepoDir(uint64_t parent, const std::string& name,
                                         const RepoId& repo, const std::string& rev,
                                         bool rev_is_commit) {
  return SingleFlight(parent, name,
                      [&] { return FetchAndPublish(parent, name, repo, rev, rev_is_commit); });
}

Result<uint64_t> ModelFs::SingleFlight(uint64_t parent, const std::string& name,
                                       const std::function<Result<uint64_t>()>& work) {
  const std::string key = std::to_string(parent) + "/" + name;
  std::promise<Result<uint64_t>> promise;
  {
    std::unique_lock lock(table_mu_);
    if (std::optional<uint64_t> ino = FindChildLocked(parent, name)) return *ino;
    auto it = inflight_.find(key);
    if (it != inflight_.end()) {
      Flight flight = it->second;
      lock.unlock();
      joined_flights_.fetch_add(1, std::memory_order_relaxed);
      return flight.get();  // bounded: the resolver's hub calls are bounded by fetch timeouts
    }
    inflight_.emplace(key, promise.get_future().share());
  }
  Result<uint64_t> result = work();
  {
    // Erase after publishing: a lookup arriving in between finds the published child instead.
    std::unique_lock lock(table_mu_);
    inflight_.erase(key);
  }
  promise.set_value(result);
  return result;
}

Result<uint64_t> ModelFs::FetchAndPublish(uint64_t parent, const std::string& name,
                                          const RepoId& repo, const std::string& rev,
                                          bool rev_is_commit) {
  Result<std::string> commit = rev_is_commit ? Result<std::string>(rev) : hub_.ResolveRevision(repo, rev);
  if (!commit.ok()) {
    MODELFS_LOG(kWarn, "%s %s@%s: %s", repo.type.c_str(), repo.Id().c_str(),
                rev.empty() ? "(default branch)" : rev.c_str(), commit.status().ToString().c_str());
    return commit.status();
  }
  Result<std::vector<FileEntry>> entries = hub_.ListTree(repo, *commit);
  if (!entries.ok()) {
    MODELFS_LOG(kWarn, "%s %s@%s: listing failed: %s", repo.type.c_str(), repo.Id().c_str(),
                commit->c_str(), entries.status().ToString().c_str());
    return entries.status();
  }
  MODELFS_LOG(kInfo, "%s %s%s%s pinned to commit %s (%zu entries)", repo.type.c_str(), repo.Id().c_str(),
              rev.empty() ? "" : "@", rev.c_str(), commit->c_str(), entries->size());

  const bool is_single_root = single_ && parent == kRootIno && name.empty();
  const uint64_t repo_ino = is_single_root ? kRootIno : next_ino_.fetch_add(1);
  std::vector<std::unique_ptr<Node>> nodes;
  Status s = BuildTree(repo, *commit, *entries, repo_ino, parent, name, &nodes);
  if (!s.ok()) return s;

  std::unique_lock lock(table_mu_);
  for (auto& n : nodes) {
    const uint64_t ino = n->ino;
    nodes_[ino] = std::move(n);  // replaces the single-repo root placeholder; inserts otherwise
  }
  if (is_single_root) {
    root_ready_ = true;
  } else {
    nodes_.at(parent)->children.emplace(name, repo_ino);
  }
  // Hub-cache layout: every file of a new snapshot is also blobs/<etag>. Two files (in this or an
  // earlier snapshot) with one etag have the same bytes, so the first node stays.
  Node* p = nodes_.at(parent).get();
  if (p->kind == Kind::kHfSnapshots) {
    Node* blobs = nodes_.at(HfChildLocked(p->parent, "blobs")).get();
    for (const FileEntry& e : *entries) {
      if (e.is_dir || blobs->children.count(e.expected_hash()) != 0) continue;
      auto b = std::make_unique<Node>();
      b->ino = next_ino_.fetch_add(1);
      b->parent = blobs->ino;
      b->kind = Kind::kFile;
      b->name = e.expected_hash();
      b->blob = BlobRef::For(repo, *commit, e);
      blobs->children.emplace(b->name, b->ino);
      nodes_.emplace(b->ino, std::move(b));
    }
  }
  return repo_ino;
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

Status ModelFs::BuildTree(const RepoId& repo, const std::string& commit,
                          const std::vector<FileEntry>& entries, uint64_t repo_ino,
                          uint64_t repo_parent, const std::string& repo_name,
                          std::vector<std::unique_ptr<Node>>* out) {
  auto root = std::make_unique<Node>();
  root->ino = repo_ino;
  root->parent = repo_parent;
  root->kind = Kind::kRepo;
  root->name = repo_name;
  std::unordered_map<std::string, Node*> dirs;  // repo-relative dir path -> node ("" = repo root)
  dirs.emplace("", root.get());
  out->push_back(std::move(root));

  // Trees may list a file before its directory, or not list the directory at all: directories are
  // created on demand from the path components.
  auto add_child = [&](Node* parent, const std::string& name, Kind kind) -> Node* {
    auto n = std::make_unique<Node>();
    n->ino = next_ino_.fetch_add(1);
    n->parent = parent->ino;
    n->kind = kind;
    n->name = name;
    parent->children.emplace(name, n->ino);
    Node* raw = n.get();
    out->push_back(std::move(n));
    return raw;
  };
  auto ensure_dir = [&](const std::string& path) -> Result<Node*> {
    Node* cur = dirs.at("");
    size_t start = 0;
    while (start < path.size()) {
      size_t slash = path.find('/', start);
      if (slash == std::string::npos) slash = path.size();
      const std::string prefix = path.substr(0, slash);
      const std::string comp = path.substr(start, slash - start);
      if (comp.empty() || comp == "." || comp == "..") {
        return Status::InvalidArgument("bad path in tree: " + path);
      }
      auto it = dirs.find(prefix);
      if (it != dirs.end()) {
        cur = it->second;
      } else {
        if (cur->children.count(comp) != 0) {
          return Status::InvalidArgument("tree lists both a file and a dir at " + prefix);
        }
        cur = add_child(cur, comp, Kind::kDir);
        dirs.emplace(prefix, cur);
      }
      start = slash + 1;
    }
    return cur;
  };

  for (const FileEntry& e : entries) {
    if (e.path.empty()) return Status::InvalidArgument("empty path in tree");
    if (e.is_dir) {
      Result<Node*> d = ensure_dir(e.path);
      if (!d.ok()) return d.status();
      continue;
    }
    const size_t slash = e.path.rfind('/');
    const std::string dir = slash == std::string::npos ? "" : e.path.substr(0, slash);
    const std::string base = slash == std::string::npos ? e.path : e.path.substr(slash + 1);
    if (base.empty() || base == "." || base == "..") {
      return Status::InvalidArgument("bad path in tree: " + e.path);
    }
    Result<Node*> d = ensure_dir(dir);
    if (!d.ok()) return d.status();
    if ((*d)->children.count(base) != 0) {
      return Status::InvalidArgument("tree lists " + e.path + " twice");
    }
    Node* f = add_child(*d, base, Kind::kFile);
    f->blob = BlobRef::For(repo, commit, e);
  }
  return Status::Ok();
}

Result<DirListing> ModelFs::ReadDir(uint64_t ino) {
  if (single_ && ino == kRootIno) {
    Status s = EnsureSingleRepo();
    if (!s.ok()) return s;
  }
  std::shared_lock lock(table_mu_);
  const Node* n = FindLocked(ino);
  if (n == nullptr) return Status::NotFound("no inode " + std::to_string(ino));
  if (n->kind == Kind::kFile || n->kind == Kind::kRefFile) {
    return Status::InvalidArgument("not a directory");
  }
  DirListing out;
  out.immutable = n->kind == Kind::kRepo || n->kind == Kind::kDir || n->kind == Kind::kHfRepo;
  out.entries.reserve(n->children.size() + 2);
  out.entries.push_back(DirEntry{".", AttrOfLocked(*n)});
  out.entries.push_back(DirEntry{"..", AttrOfLocked(*FindLocked(n->parent))});
  for (const auto& [name, child] : n->children) {
    out.entries.push_back(DirEntry{name, AttrOfLocked(*FindLocked(child))});
  }
  return out;
}

std::string NextShardName(const std::string& name) {
  // <stem>-<i>-of-<n><ext>, i and n of the same width (model-00001-of-00004.safetensors,
  // pytorch_model-00002-of-00003.bin): the same name with i + 1, or "" after the last.
  const size_t of = name.rfind("-of-");
  if (of == std::string::npos) return "";
  size_t n_end = of + 4;
  while (n_end < name.size() && isdigit(static_cast<unsigned char>(name[n_end]))) n_end++;
  size_t i_begin = of;
  while (i_begin > 0 && isdigit(static_cast<unsigned char>(name[i_begin - 1]))) i_begin--;
  const size_t width = of - i_begin;
  if (width == 0 || width > 9 || n_end - (of + 4) != width || i_begin == 0 || name[i_begin - 1] != '-') return "";
  const unsigned long i = std::stoul(name.substr(i_begin, width));
  const unsigned long total = std::stoul(name.substr(of + 4, width));
  if (i + 1 > total) return "";
  std::string next = std::to_string(i + 1);
  if (next.size() > width) return "";
  next.insert(0, width - next.size(), '0');
  return name.substr(0, i_begin) + next + name.substr(of);
}

std::string FirstShardName(const std::string& index_name, const std::vector<std::string>& siblings) {
  // <base>.index.json names the shards <stem>-<i>-of-<n><ext> of <base> = <stem><ext>
  // (model.safetensors.index.json: model-00001-of-00004.safetensors).
  static const std::string kIndex = ".index.json";
  if (index_name.size() <= kIndex.size() ||
      index_name.compare(index_name.size() - kIndex.size(), kIndex.size(), kIndex) != 0) {
    return "";
  }
  const std::string base = index_name.substr(0, index_name.size() - kIndex.size());
  const size_t dot = base.rfind('.');
  if (dot == std::string::npos || dot == 0) return "";
  const std::string prefix = base.substr(0, dot) + "-", ext = base.substr(dot);
  for (const std::string& name : siblings) {
    if (name.size() <= prefix.size() + ext.size() || name.compare(0, prefix.size(), prefix) != 0 ||
        name.compare(name.size() - ext.size(), ext.size(), ext) != 0) {
      continue;
    }
    // The first shard is the one whose successor is numbered 2 (or a checkpoint of one shard).
    const std::string middle = name.substr(prefix.size(), name.size() - prefix.size() - ext.size());
    const size_t of = middle.find("-of-");
    if (of == std::string::npos || of == 0 || of + 4 + of != middle.size()) continue;
    const std::string i = middle.substr(0, of), n = middle.substr(of + 4);
    if (i.find_first_not_of("0123456789") != std::string::npos || n.find_first_not_of("0123456789") != std::string::npos)
      continue;
    if (std::stoul(i) == 1) return name;
  }
  return "";
}

Status ModelFs::Open(uint64_t ino, int flags, uint64_t* fh, bool* keep_cache) {
  if (fh != nullptr) *fh = 0;
  if (keep_cache != nullptr) *keep_cache = true;
  if ((flags & O_ACCMODE) != O_RDONLY || (flags & (O_TRUNC | O_APPEND | O_CREAT)) != 0) {
    return Status::ReadOnly("modelfs is read-only");
  }
  const Node* n;
  {
    std::shared_lock lock(table_mu_);
    n = FindLocked(ino);
  }
  if (n == nullptr) return Status::NotFound("no inode " + std::to_string(ino));
  if (n->kind == Kind::kRefFile) return Status::Ok();  // content lives in the node
  if (n->kind != Kind::kFile) return Status::InvalidArgument("not a file");
  store_.OpenBlob(n->blob);  // n is an immutable kFile node: safe without the lock
  if (keep_cache != nullptr) *keep_cache = store_.IsVerified(n->blob.key);
  if (fh != nullptr) *fh = reinterpret_cast<uint64_t>(new OpenFile);
  // A sharded checkpoint is loaded shard after shard: tell the store which files follow this one
  // (two deep, so the store can look ahead past the next shard).
  const Node* cur = n;
  for (int depth = 0; depth < 2; depth++) {
    const std::string next_name = NextShardName(cur->name);
    if (next_name.empty()) break;
    const Node* next = nullptr;
    {
      std::shared_lock lock(table_mu_);
      auto ino_next = FindChildLocked(cur->parent, next_name);
      if (ino_next) next = FindLocked(*ino_next);
    }
    if (next == nullptr || next->kind != Kind::kFile) break;
    store_.HintNext(cur->blob, next->blob);
    cur = next;
  }
  // A sharded checkpoint's index is read by a loader of the model, which opens the first shard
  // next and reads all of it: the store may fetch its head now (and needs no evidence that the
  // reader reads all of the file).
  if (n->name.size() > 11 && n->name.compare(n->name.size() - 11, 11, ".index.json") == 0) {
    const Node* first = nullptr;
    {
      std::shared_lock lock(table_mu_);
      const Node* dir = FindLocked(n->parent);
      std::vector<std::string> names;
      if (dir != nullptr) {
        for (const auto& [name, child] : dir->children) names.push_back(name);
      }
      const std::string first_name = FirstShardName(n->name, names);
      if (!first_name.empty()) {
        auto ino_first = FindChildLocked(n->parent, first_name);
        if (ino_first) first = FindLocked(*ino_first);
      }
    }
    if (first != nullptr && first->kind == Kind::kFile) store_.HintLoad(first->blob);
  }
  return Status::Ok();
}

void ModelFs::Release(uint64_t ino, uint64_t fh) {
  delete reinterpret_cast<OpenFile*>(fh);
  const Node* n;
  {
    std::shared_lock lock(table_mu_);
    n = FindLocked(ino);
  }
  if (n != nullptr && n->kind == Kind::kFile) store_.CloseBlob(n->blob);
}

void ModelFs::OpenFile::Ask(uint64_t begin, uint64_t end) {
  // Merge [begin, end) with the ranges it touches or adjoins.
  auto it = asked.upper_bound(begin);
  if (it != asked.begin() && std::prev(it)->second >= begin) {
    --it;
    begin = it->first;
    end = std::max(end, it->second);
    it = asked.erase(it);
  }
  while (it != asked.end() && it->first <= end) {
    end = std::max(end, it->second);
    it = asked.erase(it);
  }
  asked.emplace(begin, end);
  // A random reader leaves many ranges: keep the one from the start (all that Asked looks at)
  // and a bounded number of others.
  if (asked.size() > kMaxAskedRanges) {
    auto head = asked.find(0);
    const uint64_t head_end = head != asked.end() ? head->second : 0;
    asked.clear();
    if (head_end > 0) asked.emplace(0, head_end);
  }
}

uint64_t ModelFs::OpenFile::AskedBytes() const {
  uint64_t total = 0;
  for (const auto& [begin, end] : asked) total += end - begin;
  return total;
}

bool ModelFs::OpenFile::Asked(uint64_t end) const {
  if (end == 0) return true;
  auto it = asked.find(0);
  return it != asked.end() && it->second >= end;
}

Status ModelFs::Read(uint64_t ino, uint64_t offset, size_t size, char* buf, size_t* n, uint64_t fh,
                     BlobStore::FileSpan* span) {
  *n = 0;
  const Node* node;
  {
    std::shared_lock lock(table_mu_);
    node = FindLocked(ino);
  }
  if (node == nullptr) return Status::NotFound("no inode " + std::to_string(ino));
  if (node->kind == Kind::kRefFile) {  // immutable once published, like a kFile node
    if (offset < node->data.size()) {
      *n = std::min<size_t>(size, node->data.size() - offset);
      memcpy(buf, node->data.data() + offset, *n);
    }
    return Status::Ok();
  }
  if (node->kind != Kind::kFile) return Status::InvalidArgument("not a file");
  // A reader given bytes of a file whose hash failed since: every later read fails, EOF included.
  auto* const handle = reinterpret_cast<OpenFile*>(fh);
  const uint64_t failures = handle != nullptr ? store_.HashFailures(node->blob) : 0;
  if (handle != nullptr) {
    std::lock_guard<std::mutex> l(handle->mu);
    if (handle->served && handle->failures != failures) {
      return Status::Corruption(node->blob.repo.Id() + " " + node->blob.path +
                                " failed its hash after this reader was given bytes of it; "
                                "open it again to read the refetched file");
    }
  }
  const uint64_t file_size = node->blob.size;
  if (offset >= file_size || size == 0) return Status::Ok();
  const size_t len = static_cast<size_t>(std::min<uint64_t>(size, file_size - offset));
  // Fail closed at the end of a file: a reader that asked for all of it before these last bytes
  // gets them only once the whole-file hash judged the file (what it was given but the cache
  // could not keep is fetched again for that), and EIO if the hash failed.
  bool whole = false;
  if (handle != nullptr) {
    std::lock_guard<std::mutex> l(handle->mu);
    // Kernel readahead reaches the threads in any order: the file's last read may come before
    // reads of the window ahead of it. A reader that asked for all but that window, and for half
    // of the file at least, is reading the whole file.
    const uint64_t window = OpenFile::kReadaheadReorderBytes;
    whole = offset + len == file_size && handle->Asked(offset > window ? offset - window : 0) &&
            2 * (handle->AskedBytes() + len) >= file_size;
    handle->Ask(offset, offset + len);
  }
  if (whole) {
    Status c = store_.CompleteForReader(node->blob);
    if (!c.ok()) {
      MODELFS_LOG(kWarn, "read %s %s [%llu, +%zu): %s", node->blob.repo.Id().c_str(), node->blob.path.c_str(),
                  (unsigned long long)offset, len, c.ToString().c_str());
      return c;
    }
  }
  Status s = span != nullptr ? store_.ReadOrSpan(node->blob, offset, len, buf, n, span)
                             : store_.Read(node->blob, offset, len, buf, n);
  if (s.ok() && *n > 0 && handle != nullptr) {
    // As of before this read, so that a failure during it counts; but a first read that waited
    // for the file to verify (after a failure the store serves it only verified) got verified
    // bytes: failures before that are not this reader's.
    const bool verified_now = failures > 0 && store_.IsVerified(node->blob.key);
    const uint64_t baseline = verified_now ? store_.HashFailures(node->blob) : failures;
    std::lock_guard<std::mutex> l(handle->mu);
    if (!handle->served) {
      handle->served = true;
      handle->failures = baseline;
    }
  }
  if (!s.ok()) {
    MODELFS_LOG(kWarn, "read %s %s [%llu, +%zu): %s", node->blob.repo.Id().c_str(), node->blob.path.c_str(),
                (unsigned long long)offset, len, s.ToString().c_str());
  }
  return s;
}

}  // namespace modelfs
