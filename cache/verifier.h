// DiskBlobStore::Verifier: the whole-file hash as bytes land, on a pool of its own. Each stored
// range that reaches a blob's hash frontier (the first block not hashed yet) schedules the blob;
// the pool's thread then feeds the blocks on disk from the frontier on, in file order, into the
// blob's running SHA-256 (LFS) or git blob SHA-1 (they were just written: the reads hit the page
// cache), and once the last block is in compares: a match lets readers at the file's end go on
// and has a second thread mark the blob verified (durably, the data synced first: Persist), a
// mismatch has the store blame a host and drop its chunks (Blame,
// ForgetBlocks). The running hash starts over whenever blocks of the file were dropped
// (BlockFile::drops()), so what it vouches for is always what is on disk.
//
// One thread: hashing is disk- and CPU-bound, a file's blocks must go in order, and each file's
// task runs alone (Blob::verifying), so the hash state needs no lock of its own.
//
// Locks: none of its own. The hash state of a blob (Blob::hasher, hashed, hashed_drops,
// hash_again, verifying, matched_drops) is guarded by that Blob's mu and only written by the
// blob's one task; a match is recorded holding Blob::drop_mu shared (no block may be dropped
// between the comparison and the durable flag: Persist checks BlockFile::drops() under it, and a
// file dropped since is hashed again); a mismatch calls the store's ForgetBlocks with no
// lock held (it takes drop_mu exclusively). Schedule may be called with no Blob::mu held, from any
// thread.
#pragma once

#include <chrono>
#include <memory>

#include "cache/disk_blob_store.h"
#include "common/thread_pool.h"

namespace modelfs {

class DiskBlobStore::Verifier {
 public:
  explicit Verifier(DiskBlobStore* store);
  // Runs no new task; waits for the running one.
  ~Verifier() = default;
  Verifier(const Verifier&) = delete;
  Verifier& operator=(const Verifier&) = delete;

  // Queues b's hash (counted in the store's busy_) unless it cannot advance: the block at its
  // frontier is not on disk, or it matched with the blocks as they are. A task running already
  // looks once more when it ends (Blob::hash_again). A complete blob never hashed (a crash before
  // verification) is queued too.
  void Schedule(const std::shared_ptr<Blob>& b);

 private:
  // The task: hashes from the frontier as far as the blocks on disk reach, then compares if the
  // file is complete. Runs on pool_.
  void HashAhead(const std::shared_ptr<Blob>& b);
  // After a match: makes the blob's blocks and its verified flag durable, unless blocks were
  // dropped since (BlockFile::drops() moved past `drops`). Runs on sync_pool_.
  void Persist(const std::shared_ptr<Blob>& b, uint64_t drops, std::chrono::steady_clock::time_point matched_at);

  DiskBlobStore* const store_;
  // The durable flags, in turn: a file's data sync (fdatasync, hundreds of ms for a large file)
  // on the hash thread held up the next file's hash, and its reader waits for that at its end.
  // Declared first: destroyed after pool_, whose running task may still queue here.
  ThreadPool sync_pool_{1};
  ThreadPool pool_{1};  // one thread, see above
};

}  // namespace modelfs
