// DiskBlobStore::Verifier: the whole-file hash as bytes land, on a pool of its own. Each stored
// range that reaches a blob's hash frontier (the first block not hashed yet) schedules the blob;
// the pool's thread then feeds the blocks on disk from the frontier on, in file order, into the
// blob's running SHA-256 (LFS) or git blob SHA-1 (they were just written: the reads hit the page
// cache), and once the last block is in compares: a match marks the blob verified (durably, the
// data synced first), a mismatch has the store blame a host and drop its chunks (Blame,
// ForgetBlocks). The running hash starts over whenever blocks of the file were dropped
// (BlockFile::drops()), so what it vouches for is always what is on disk.
//
// One thread: hashing is disk- and CPU-bound, a file's blocks must go in order, and each file's
// task runs alone (Blob::verifying), so the hash state needs no lock of its own.
//
// Locks: none of its own. The hash state of a blob (Blob::hasher, hashed, hashed_drops,
// hash_again, verifying, matched_drops) is guarded by that Blob's mu and only written by the
// blob's one task; a match is recorded holding Blob::drop_mu shared (no block may be dropped
// between the comparison and the durable flag); a mismatch calls the store's ForgetBlocks with no
// lock held (it takes drop_mu exclusively). Schedule may be called with no Blob::mu held, from any
// thread.
#pragma once

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

  DiskBlobStore* const store_;
  ThreadPool pool_{1};  // one thread, see above
};

}  // namespace modelfs
