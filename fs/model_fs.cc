// ModelFs, the tree: the inode table and attributes, the plain layout (ORG/NAME@REV dirs, or one
// repo at the root), the single flight that resolves each repo dir once, and the building and
// publishing of a pinned tree, shared by both layouts. The hub-cache layout's lookups are in
// fs/model_fs_hf_cache.cc, open and read in fs/model_fs_read.cc (fs/model_fs_internal.h: the Node).
#include "fs/model_fs.h"

#include <sys/stat.h>

#include <chrono>
#include <mutex>
#include <utility>

#include "common/log.h"
#include "fs/model_fs_internal.h"

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
  auto entry = [this](Result<uint64_t> ino) -> Result<FsEntry> {
    if (!ino.ok()) return ino.status();
    Result<FsAttr> a = GetAttr(*ino);
    if (!a.ok()) return a.status();
    return EntryOf(*a);
  };
  if (opts_.layout == FsLayout::kHfCache) {
    if (kind == Kind::kRoot) return entry(LookupHfRepo(name));
    if (kind == Kind::kHfRefs) return entry(LookupHfRef(parent, name));
    if (kind == Kind::kHfSnapshots) return entry(LookupHfSnapshot(parent, name));
    return Status::NotFound("no such entry: " + name);
  }
  switch (kind) {
    case Kind::kRoot:  // model orgs, and datasets/
    case Kind::kDatasets:  // dataset orgs
      if (kind == Kind::kRoot && name == "datasets") {
        std::unique_lock lock(table_mu_);
        Node* root = nodes_.at(kRootIno).get();
        root->children.emplace("datasets", kDatasetsIno);
        return EntryOf(AttrOfLocked(*nodes_.at(kDatasetsIno)));
      }
      if (!IsValidHubName(name)) return Status::NotFound("not a hub namespace: " + name);
      return kind == Kind::kRoot ? entry(GetOrCreateOrg(kRootIno, name, "model"))
                                 : entry(GetOrCreateOrg(kDatasetsIno, name, "dataset"));
    case Kind::kOrg: {
      std::string repo_name, rev;
      if (!ParseRepoDirName(name, &repo_name, &rev)) {
        return Status::NotFound("not a repo name: " + name);
      }
      RepoId repo;
      repo.type = org_type;
      repo.ns = org_ns;
      repo.name = repo_name;
      return entry(ResolveRepoDir(parent, name, repo, rev));
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
  if (nodes_.at(parent)->kind == Kind::kHfSnapshots) AddHfBlobsLocked(parent, repo, *commit, *entries);
  return repo_ino;
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

}  // namespace modelfs