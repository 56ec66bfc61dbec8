// ModelFs: the filesystem logic, with no libfuse types. It turns hub repos pinned at a commit into
// a tree of inodes and answers lookups, attributes, directory listings and reads;
// fs/fuse_adapter.cc is the only code that converts these plain structs to and from libfuse.
//
// Layout (multi-repo mode, FsOptions::single_repo unset):
//   /                         root: the org dirs looked up so far, plus "datasets" once used
//   /<org>/                   any valid hub namespace is a dir; creating it costs no network call
//   /<org>/<name>             repo `org/name` at its default branch
//   /<org>/<name>@<rev>       ... at a branch, tag or commit; "%2F" in <rev> stands for "/", so
//                             "name@refs%2Fpr%2F1" is the PR ref "refs/pr/1"
//   /datasets/<org>/<name>    the same for dataset repos
// In single-repo mode the root itself is the repo (at FsOptions::single_rev).
//
// Hub-cache layout (FsOptions::layout == FsLayout::kHfCache): the same pinned trees presented as a
// Hugging Face hub cache (the directory layout huggingface_hub writes), so huggingface_hub /
// transformers resolve files offline with HF_HUB_CACHE pointing at the mount:
//   /models--<org>--<name>/              appears on first lookup; the lookup resolves "main"
//     refs/<rev>                         file holding the 40-hex commit, NO trailing newline; a
//                                        lookup of any branch or tag name resolves and pins it
//     snapshots/<commit>/<path>          the pinned tree (regular files, not symlinks: every reader
//                                        follows links with exists()/isfile(), so files work)
//     blobs/<etag>                       each file of every pinned snapshot under its etag (LFS
//                                        SHA-256 or git blob id), same bytes as the snapshot file
//   /datasets--<org>--<name>/            the same for datasets
// `.no_exist/` and `trees/` are never present: a probed-but-missing file is plain ENOENT, and a
// hub cache need not hold trees/<commit>.json, so a view may leave it out. Nested refs
// ("refs/refs/pr/1") are not offered: open a PR through snapshots/<commit> instead.
//
// Pinning: the first lookup of a repo dir calls HubApi::ResolveRevision and then HubApi::ListTree
// once, and the dir stays pinned to that commit for the life of the mount, so every inode below it
// is immutable. Concurrent first lookups of one repo dir share one resolution (single flight);
// lookups of other repos are not blocked, because no lock is held across a hub call. Failures are
// not remembered here: the next lookup tries again (the kernel caches a NotFound for
// negative_timeout_s).
//
// Inodes are never freed: trees are immutable and tiny next to the file data they describe, so a
// mount keeps every inode it ever handed out and FUSE forget is a no-op. Inode numbers are
// therefore stable for the life of the mount, and no generation numbers are needed.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <future>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <shared_mutex>
#include <string>
#include <unordered_map>
#include <vector>

#include "cache/blob_store.h"
#include "common/repo.h"
#include "common/status.h"
#include "fetch/hub_api.h"

namespace modelfs {

// How repos are presented (see the layout comment above).
enum class FsLayout { kPlain, kHfCache };

struct FsOptions {
  FsLayout layout = FsLayout::kPlain;  // kHfCache requires single_repo unset
  std::optional<RepoId> single_repo;  // set: the mount root IS this repo (at single_rev)
  std::string single_rev;             // "" = default branch
  uint32_t uid = 0, gid = 0;          // owner shown for every inode
  // Content is immutable (pinned commit), so the kernel may cache names and attributes for a day.
  double entry_timeout_s = 86400, attr_timeout_s = 86400;
  double negative_timeout_s = 1;  // unknown names may appear later (new repos)

  bool operator==(const FsOptions&) const = default;  // tools/ checks its defaults against these
};

// Attributes of one inode (what stat(2) shows). atime = mtime = ctime = the mount time.
struct FsAttr {
  uint64_t ino = 0;
  uint32_t mode = 0;     // S_IFDIR | 0555 or S_IFREG | 0444
  uint32_t nlink = 0;    // 2 for dirs, 1 for files
  uint64_t size = 0;     // file content size; 0 for dirs
  uint64_t blocks = 0;   // 512-byte units, ceil(size / 512)
  uint32_t blksize = 0;  // preferred I/O size hint
  uint32_t uid = 0, gid = 0;
  int64_t time_sec = 0;
  uint32_t time_nsec = 0;

  bool is_dir() const;
};

// The answer to a successful lookup, with how long the kernel may cache it.
struct FsEntry {
  FsAttr attr;
  double entry_timeout_s = 0;
  double attr_timeout_s = 0;
};

struct DirEntry {
  std::string name;
  FsAttr attr;
};

// A snapshot of one directory, taken at opendir.
struct DirListing {
  std::vector<DirEntry> entries;  // ".", "..", then the children sorted by name
  // True inside a pinned repo: the listing can never change, so the kernel may cache it. False for
  // the root, "datasets" and org dirs, which grow as repos are looked up.
  bool immutable = false;
};

// The file after `name` in a sharded checkpoint (model-00001-of-00004.safetensors ->
// model-00002-of-00004.safetensors), or "" when `name` is not a shard or is the last one.
std::string NextShardName(const std::string& name);
// The first shard (<stem>-1-of-<n><ext>, any width) among `siblings` of the sharded checkpoint whose
// index is `index_name` (<stem><ext>.index.json), or "".
std::string FirstShardName(const std::string& index_name, const std::vector<std::string>& siblings);

class ModelFs {
 public:
  static constexpr uint64_t kRootIno = 1;  // FUSE_ROOT_ID

  // `hub` and `store` must outlive this object. Does no network I/O (see Init).
  ModelFs(FsOptions opts, HubApi& hub, BlobStore& store);
  ~ModelFs();  // unregisters from the store's invalidation hook

  // Installs `fn`, called with each inode whose content the store dropped after a failed hash
  // check, so the adapter can drop the kernel's cached pages of it (bytes served before
  // verification must not keep being served from the page cache). Empty: uninstalls; returns
  // only once no call is running. Called by the adapter around its request loop.
  void SetContentInvalidator(std::function<void(uint64_t ino)> fn);
  // Inodes of files whose content key is `key` (in every repo and revision of this mount).
  std::vector<uint64_t> InodesWithContent(const std::string& key) const;
  ModelFs(const ModelFs&) = delete;
  ModelFs& operator=(const ModelFs&) = delete;

  // Single-repo mode: resolves the repo and lists its tree now, so a mount of a bad repo or
  // revision fails before it goes live. Without Init the first access to the root does it. OK in
  // multi-repo mode, and OK again once resolved. Not required before other calls.
  Status Init();

  // Finds `name` in directory `parent`, creating org dirs and resolving repo dirs as needed (see
  // the layout above). NotFound for names that do not exist or are not valid hub names (the caller
  // should cache that for options().negative_timeout_s); other errors (Unavailable,
  // PermissionDenied) come from the hub and are not cached. Thread-safe; may block on hub calls.
  Result<FsEntry> Lookup(uint64_t parent, const std::string& name);

  // Attributes of an inode handed out earlier. NotFound for an unknown inode. Thread-safe, no I/O.
  Result<FsAttr> GetAttr(uint64_t ino);

  // Snapshot of a directory's entries. NotFound for an unknown inode, InvalidArgument for a file.
  // In single-repo mode reading the root may resolve the repo (and fail like Init). Thread-safe.
  Result<DirListing> ReadDir(uint64_t ino);

  // Opens a file for reading: ReadOnly for any write access (O_WRONLY, O_RDWR, O_TRUNC, O_APPEND,
  // O_CREAT); InvalidArgument for a directory; NotFound for an unknown inode. On success the blob
  // is opened in the store (BlobStore::OpenBlob) and must be matched by one Release. With `fh`,
  // a handle for this reader is returned there (the FUSE file handle), to pass to Read and
  // Release: it remembers what the reader was given (see Read). Thread-safe.
  // *keep_cache: whether the kernel may keep its cached pages of the file across opens (only a
  // verified file's: pages an earlier reader got of an unverified file are dropped at open, so
  // this reader's reads reach the store and its end-of-file check).
  Status Open(uint64_t ino, int flags, uint64_t* fh = nullptr, bool* keep_cache = nullptr);
  // Ends one successful Open of `ino` (BlobStore::CloseBlob) and frees its handle. Thread-safe.
  void Release(uint64_t ino, uint64_t fh = 0);

  // Copies bytes [offset, offset+size) of file `ino` into buf (caller-owned, room for size bytes)
  // and sets *n to the count copied: size, or less only at EOF (0 at or past EOF). Errors come from
  // the store (network failures for uncached bytes). With the handle from Open: once the reader
  // was given bytes of a file whose whole-file hash then failed (BlobStore::HashFailures), every
  // later read of that handle is a Corruption error (EIO), at or past EOF too: such a reader
  // never sees a clean end of a file it may have read wrong. A new open reads the refetched
  // bytes. Thread-safe; many reads run concurrently.
  // With `span`: where the store can give the bytes as a range of one of its files (BlobStore::
  // ReadOrSpan: blocks checked in this run) or of its memory, *span is filled and nothing is copied
  // into dest (*n is the span's length); the caller has the kernel copy them and then releases
  // span->hold. Otherwise span->fd stays -1 and dest's buffer holds the bytes. A dest that takes
  // its buffer lazily (ReadDest) is asked for it only once bytes are ready to copy.
  Status Read(uint64_t ino, uint64_t offset, size_t size, ReadDest dest, size_t* n, uint64_t fh = 0,
              BlobStore::FileSpan* span = nullptr);

  // Number of inodes handed out so far (for statfs).
  uint64_t InodeCount() const;
  // The path of an inode below the mount root ("/acme/tiny@v1/model.safetensors", "/" for the
  // root), for log lines; "<inode N>" for an inode never handed out. A hub-cache blob reached
  // under several names shows the one it was created under. Thread-safe, no I/O.
  std::string PathOf(uint64_t ino) const;
  // Lookups so far that waited for another lookup's resolution of the same repo dir instead of
  // asking the hub themselves (the single flight at work). Lets a test know that concurrent
  // lookups have all joined a flight before it lets the flight end. Thread-safe, lock-free.
  uint64_t JoinedFlights() const { return joined_flights_.load(std::memory_order_relaxed); }

  const FsOptions& options() const { return opts_; }

  // Name rules shared with tools/: a hub namespace or repo name is [A-Za-z0-9][\w.-]{0,95} without
  // "--" or "..".
  static bool IsValidHubName(const std::string& name);
  // Splits an org-dir entry name "repo" or "repo@rev" into the repo name and the decoded revision
  // ("%2F" -> "/"; "" = default branch). False if the name or revision is not acceptable.
  static bool ParseRepoDirName(const std::string& entry, std::string* repo_name, std::string* rev);
  // A hub-cache folder name ("models--org--name" / "datasets--org--name") as a RepoId; false for
  // anything else (spaces are not offered).
  static bool ParseHfCacheDirName(const std::string& entry, RepoId* repo);

 private:
  // What one open file handle was given (Open's fh points at one).
  struct OpenFile {
    std::mutex mu;
    bool served = false;    // some bytes of the file were returned to this reader
    uint64_t failures = 0;  // the blob's HashFailures when it was first served
    // The byte ranges asked for on this handle (start -> end, merged), those still being read
    // included: a reader that asked for all of [0, offset) and now asks for the file's last bytes
    // read the whole file (BlobStore::CompleteForReader).
    std::map<uint64_t, uint64_t> asked;
    static constexpr size_t kMaxAskedRanges = 1024;
    void Ask(uint64_t begin, uint64_t end);
    bool Asked(uint64_t end) const;  // all of [0, end)
    uint64_t AskedBytes() const;
    // How far ahead of a reader the kernel's readahead may have sent reads that the FUSE threads
    // have not taken yet (two windows of the 8 MiB --max-readahead).
    static constexpr uint64_t kReadaheadReorderBytes = 16ull << 20;
  };
  struct Node;
  // kHf*: the hub-cache layout's fixed dirs; kRefFile: a refs/<rev> file (content in the node).
  enum class Kind {
    kRoot, kDatasets, kOrg, kRepo, kDir, kFile, kHfRepo, kHfRefs, kHfSnapshots, kHfBlobs, kRefFile
  };
  using Flight = std::shared_future<Result<uint64_t>>;

  static constexpr uint64_t kDatasetsIno = 2;  // "/datasets", listed at the root once looked up

  FsAttr AttrOfLocked(const Node& n) const;
  FsEntry EntryOf(const FsAttr& a) const;
  const Node* FindLocked(uint64_t ino) const;
  std::optional<uint64_t> FindChildLocked(uint64_t parent, const std::string& name) const;
  Result<uint64_t> GetOrCreateOrg(uint64_t parent, const std::string& ns, const std::string& type);
  Status EnsureSingleRepo();
  // Single flight around FetchAndPublish for repo dir `name` in `parent` (kRootIno and "" for the
  // single-repo root).
  // `rev_is_commit`: rev is a full commit already resolved by the caller (no ResolveRevision).
  Result<uint64_t> ResolveRepoDir(uint64_t parent, const std::string& name, const RepoId& repo,
                                  const std::string& rev, bool rev_is_commit = false);
  Result<uint64_t> FetchAndPublish(uint64_t parent, const std::string& name, const RepoId& repo,
                                   const std::string& rev, bool rev_is_commit);
  // Runs work() once for concurrent callers asking for child `name` of `parent` (keyed in
  // inflight_); returns the existing child at once if it is already published.
  Result<uint64_t> SingleFlight(uint64_t parent, const std::string& name,
                                const std::function<Result<uint64_t>()>& work);
  // Hub-cache layout: lookups below the root, in a repo's refs/ and snapshots/ dirs.
  Result<uint64_t> LookupHfRepo(const std::string& name);
  // `known_commit`: what `name` already resolved to (skips the hub call), or "" to resolve it.
  Result<uint64_t> LookupHfRef(uint64_t refs_ino, const std::string& name,
                               const std::string& known_commit = "");
  Result<uint64_t> LookupHfSnapshot(uint64_t snapshots_ino, const std::string& name);
  // Under table_mu_ (exclusive): the child `name` of the hf repo dir `repo_ino`.
  uint64_t HfChildLocked(uint64_t repo_ino, const std::string& name) const;
  // Under table_mu_ (exclusive): adds blobs/<etag> for each file of `entries`, a snapshot just
  // published in `snapshots_ino`.
  void AddHfBlobsLocked(uint64_t snapshots_ino, const RepoId& repo, const std::string& commit,
                        const std::vector<FileEntry>& entries);
  Status BuildTree(const RepoId& repo, const std::string& commit,
                   const std::vector<FileEntry>& entries, uint64_t repo_ino, uint64_t repo_parent,
                   const std::string& repo_name, std::vector<std::unique_ptr<Node>>* out);

  const FsOptions opts_;
  HubApi& hub_;
  BlobStore& store_;
  int64_t mount_sec_ = 0;  // the one timestamp every inode shows
  uint32_t mount_nsec_ = 0;
  const bool single_;

  // Inode numbers come from this counter and are never reused. Lock-free: a tree is built with
  // final inode numbers outside any lock, then published.
  std::atomic<uint64_t> next_ino_{kDatasetsIno + 1};

  // table_mu_ guards nodes_, the children maps of the growing dirs (root, datasets, org dirs),
  // root_ready_ and inflight_. It is the only lock in ModelFs (so there is no ordering to get
  // wrong) and it is never held across a hub or store call: lookups and reads of one repo never
  // wait for another repo's network I/O. Shared for reads, exclusive to publish a new org, repo
  // tree or flight. Node objects are never destroyed; a kFile node is immutable once published, so
  // Read and Open use a kFile Node* after dropping the lock. (The single-repo root placeholder is
  // the one node ever replaced, by the resolved repo root; it is never accessed outside the lock.)
  mutable std::shared_mutex table_mu_;
  std::unordered_map<uint64_t, std::unique_ptr<Node>> nodes_;
  bool root_ready_ = false;  // single-repo mode: the root has been resolved
  // Resolutions in progress, keyed "<parent ino>/<name>". Waiters copy the future and wait without
  // the lock; the resolver publishes the tree, then erases the entry, then fulfils the promise.
  std::unordered_map<std::string, Flight> inflight_;
  std::atomic<uint64_t> joined_flights_{0};  // see JoinedFlights()
};

}  // namespace modelfs
