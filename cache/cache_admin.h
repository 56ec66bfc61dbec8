// Offline inspection and maintenance of a cache directory, for `modelfs status`, `verify` and `gc`
// (tools/cmd_cache.cc). These work on the files alone, without a DiskBlobStore: they read index
// headers (BlockFile::Peek), re-hash blocks through BlockFile, and read the stored trees that
// PersistentHubApi wrote. Run them while no daemon uses the cache for `gc`: a daemon keeps its own
// accounting and does not see blobs removed under it (it still never serves wrong bytes: every
// block read is checksummed). `status` and `verify` are safe alongside a daemon.
#pragma once

#include <ctime>
#include <string>
#include <vector>

#include "cache/block_file.h"
#include "common/repo.h"
#include "common/status.h"

namespace modelfs {

struct CachedBlob {
  std::string key;          // content key: sha256-<hex> or gitsha1-<hex>
  std::string base;         // path without .data/.idx
  BlockFileSummary summary;
  time_t last_use = 0;      // index mtime: last time a block was written or the blob verified
};

// Every blob with a readable index under cache_dir/blobs, in no particular order.
std::vector<CachedBlob> ListCachedBlobs(const std::string& cache_dir);

// A tree stored by PersistentHubApi, with the revisions (refs) that pointed at it.
struct StoredTree {
  RepoId repo;
  std::string commit;
  std::vector<std::string> revs;  // "" = the default branch
  std::vector<FileEntry> files;   // regular files only
};
// Every stored tree under cache_dir/meta. Unreadable files are skipped.
std::vector<StoredTree> ListStoredTrees(const std::string& cache_dir);

struct VerifyOutcome {
  uint32_t bad_blocks = 0;   // blocks whose XXH3 did not match (now dropped)
  bool complete = false;     // every block present (after dropping bad ones)
  bool hash_checked = false; // complete, so the whole-file hash was computed
  bool hash_ok = false;      // ... and matched the key (blob now marked verified); on a mismatch
                             // every block was dropped
};
// Re-reads every present block of `blob` (each read checks XXH3 and drops a bad block), then, if
// the blob is complete, recomputes its whole-file hash against its key. Errors: the blob's files
// cannot be opened or written.
Result<VerifyOutcome> VerifyCachedBlob(const CachedBlob& blob);

// Removes a blob's files (index first, so a crash in between leaves a data file the next store
// open removes). Returns the bytes of block data freed (4 KiB pages).
uint64_t RemoveCachedBlob(const CachedBlob& blob);

// Disk charge of a blob's present bytes, as the store counts it against the quota.
uint64_t CachedBlobCharge(const CachedBlob& blob);

}  // namespace modelfs
