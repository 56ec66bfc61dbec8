// Internals of DiskBlobStore shared by its source files, one per room:
//   disk_blob_store.cc           the coordinator: open, the blob table, reads (from disk, the
//                                wire, the spill or the head), stats
//   disk_blob_store_fetch.cc     fetches (single flight, spans, buffers, retries, spill) and the
//                                disk writes (StoreRange: in turns, admitted block by block)
//   disk_blob_store_prefetch.cc  the open's head, the safetensors layout, scheduling what each
//                                read's stream calls for (the streams, windows, region cap and
//                                jumps: cache/stream_tracker.h), lookahead across shards, fills
//   disk_blob_store_space.cc     what the space manager (cache/space_manager.h) is told: the
//                                blobs on disk at open, the cache directory, each blob's use
//   disk_blob_store_verify.cc    fail closed at the end of a file, verify before read, blame and
//                                the drop of a failed file's blocks
// and the rooms with classes of their own: cache/space_manager.h (quota, eviction, pins, the
// floor), cache/provenance.h (who served what, blame), cache/verifier.h (the whole-file hash as
// bytes land, on its own pool), cache/stream_tracker.h (the read streams).
// Not part of the cache's interface: include it from those files only.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <shared_mutex>
#include <string>
#include <tuple>
#include <vector>

#include "cache/block_file.h"
#include "cache/disk_blob_store.h"
#include "cache/hash.h"
#include "cache/provenance.h"
#include "cache/space_manager.h"
#include "cache/stream_tracker.h"
#include "cache/verifier.h"
#include "common/page_buffer.h"

namespace modelfs {

// One range request: the blocks [first, last] of one chunk (never across a chunk boundary, so a
// full chunk is the same aligned request on every machine). Its bytes are handed to readers as
// they land (`ready`), before the request ends and before the disk write.
struct DiskBlobStore::Inflight {
  ~Inflight() {
    if (pool) pool->Put(std::move(data));
  }
  uint64_t begin = 0, end = 0;       // file offsets of data[0] and one past its last byte; fixed
  uint32_t first = 0, last = 0;      // the blocks it brings; fixed
  // The memory its fetch buffer takes, in blocks (DiskBlobStore::inflight_blocks_): a one-block
  // range gets a block-sized buffer, any other a chunk-sized one.
  uint32_t buffer_blocks() const { return first == last ? 1 : kBlocksPerChunk; }
  std::shared_ptr<PageBufferPool> pool;  // where data goes back to (null: not pooled)
  std::mutex mu;
  std::condition_variable cv;
  bool done = false;   // guarded by mu
  Status status;       // valid once done
  // The bytes, from `begin`; allocated before the request is sent, uninitialized (zero-filling
  // 4 MiB per fetch was ~10% of the daemon's CPU on a fast link). data[0, ready) are final.
  PageBuffer data;
  std::atomic<uint64_t> ready{0};
  // Smallest `ready` a waiting reader needs; the fetch wakes readers only when it is reached,
  // not on every packet.
  std::atomic<uint64_t> wake_at{UINT64_MAX};
  std::string host;  // who served it; guarded by mu, set before done

  bool Covers(uint32_t block) const { return block >= first && block <= last; }
  // Called by the fetch as bytes land.
  void Arrived(uint64_t n) {
    ready.store(n);
    if (n >= wake_at.load()) {
      std::lock_guard<std::mutex> l(mu);
      wake_at.store(UINT64_MAX);
      cv.notify_all();
    }
  }
  // Waits until the file's bytes up to `upto` are in data, or the fetch ended; true if they are.
  // Bounded: the fetch always ends (RangeSource calls have timeouts and retry caps).
  bool WaitFor(uint64_t upto) {
    const uint64_t need = std::min(upto, end) - begin;
    std::unique_lock<std::mutex> l(mu);
    for (;;) {
      // Announce the need before looking at `ready`, so a fetch that moves `ready` past it
      // after the look is sure to see the announcement and wake us.
      uint64_t w = wake_at.load();
      while (need < w && !wake_at.compare_exchange_weak(w, need)) {
      }
      if (ready.load() >= need) return true;
      if (done) return ready.load() >= need;
      cv.wait(l);
    }
  }
};

// The cache directory, as the space manager sees it (disk_blob_store_space.cc): statvfs of the
// directory, the pins under pins/, a blob's two files unlinked.
class DiskBlobStore::CacheDirDisk : public SpaceManager::Disk {
 public:
  explicit CacheDirDisk(const DiskBlobStore* store) : store_(store) {}
  bool FreeBytes(uint64_t* bytes) override;
  int64_t PinsStamp() override;
  std::set<std::string> PinnedKeys() override;
  void RemoveFiles(const std::string& key) override;

 private:
  const DiskBlobStore* const store_;
};

// A Resident of the space manager: eviction asks it whether it is in use and has it drop its
// blocks (disk_blob_store_space.cc).
struct DiskBlobStore::Blob : SpaceManager::Resident {
  bool InUse() override;       // opens, a range in flight or a verification; takes mu
  void DropBlocks() override;  // all of them; its files stay

  BlobRef ref;                        // as last seen (any repo/path naming this content)
  std::unique_ptr<BlockFile> file;    // null: cache unusable for this blob, serve uncached
  std::mutex mu;                      // guards everything below
  std::map<uint32_t, std::shared_ptr<Inflight>> inflight;  // by first block; never overlapping
  std::map<uint32_t, std::shared_ptr<Inflight>> spill;     // done, not cached, kept in memory
  // HintNext: the file a reader of all of this one is likely to read next.
  std::unique_ptr<BlobRef> next;
  // The file's first kHeadBytes as an open fetched them (RunHeadFetch): memory only, dropped at
  // the last close and with the blocks after a hash failure.
  std::shared_ptr<Inflight> head;
  StreamTracker streams;              // the read streams and the safetensors layout
  int opens = 0;
  // Who served which blocks in this run, who is blamed after a hash failure, who is distrusted
  // (cache/provenance.h).
  Provenance prov;
  uint64_t generation = 0;            // bumped when blocks are dropped; older fetches are not stored
  bool verifying = false;             // a HashAhead task is queued or running
  // Hash as bytes arrive (HashAhead): the whole-file hash of blocks [0, hashed), fed in file order
  // as they land, so the file is verified moments after its last byte, not after a re-read of all
  // of it. Valid while the BlockFile's drops() equals hashed_drops; otherwise it starts over.
  std::unique_ptr<FileHasher> hasher;
  uint32_t hashed = 0;
  uint64_t hashed_drops = 0;
  bool hash_again = false;            // blocks landed while HashAhead ran: it looks once more
  // The whole-file hash matched with the blocks as of this drops() count (UINT64_MAX: not yet);
  // set before the durable flag (BlockFile::MarkVerified syncs the file first), so a reader at
  // the end of the file waits for the hash, not for the disk.
  uint64_t matched_drops = UINT64_MAX;
  // For readers that wait for the whole file to verify (CacheOptions::verify_before_read):
  // notified (with mu) whenever a fetch of this blob ends or a verification ends.
  std::condition_variable changed;
  uint64_t progress = 0;              // fetches ended + verifications ended + 64 MiB hashed
  uint64_t fetch_failures = 0;        // fetches that failed after the source's own retries
  Status last_failure;                // the latest of those
  uint64_t refused = 0;               // fetched chunks that found no room in the cache
  uint64_t untrusted = 0;             // fetched chunks not kept: a proven liar served them
  std::atomic<uint64_t> hash_failures{0};  // whole-file hash mismatches since start
  uint64_t verify_rounds = 0;         // verifications ended, whatever the outcome
  // Bytes handed to readers that were never stored (so never hashed): the head, answers not
  // cached (a blamed host's, a drop during the fetch, no room). (offset, length, XXH3) of each;
  // when the file's hash matches they are compared with the verified bytes, and a difference
  // counts as a hash failure for the readers given them (HashFailures).
  std::vector<std::tuple<uint64_t, uint64_t, uint64_t>> served_unstored;
  bool served_unstored_overflow = false;  // more than kMaxServedUnstored: all count as different
  bool filling = false;               // a background fill is running: RunFetch keeps it going
  // The fill is for a reader in its own order (Prefetch), not fill_on_open: it takes at most
  // SharedFillBudget() chunks in flight, so the streams of other readers of the file (ranks
  // reading a part each look the same at first) keep the rest of the budget.
  bool fill_shared = false;
  // Reads back into a hole, and the end of the furthest read: see kScatterBackJumps.
  uint64_t read_end = 0;
  uint32_t back_jumps = 0;
  bool load_expected = false;         // HintLoad: a loader of all of it is coming
  bool read_a_tensor = false;         // a read has landed in a tensor (Prefetch)
  // A reader in its own tensor order was seen (Prefetch): its read of the last tensor is not the
  // end of its reading, so the store's own gate at the end of the file (WaitForHashAtEnd) does not
  // hold it; a reader in file order through the mount is still gated by its handle
  // (CompleteForReader). Read without b->mu by ReadOrSpan.
  std::atomic<bool> own_order{false};
  bool layout_known = false;          // streams has the safetensors layout, or there is none
  uint64_t corrupt_logged = 0;        // BlockFile::corrupt_blocks() when last logged
  // Disk writes of this file take turns, lowest first block first (StoreRange): the first
  // blocks of the ranges waiting, and whether one is being written.
  std::multiset<uint32_t> store_waiting;
  bool storing = false;
  // Held shared while a fetched chunk is checked against `generation` and written, and exclusively
  // while blocks are dropped, so a fetch that started before a drop can never write after it.
  // Taken before mu.
  std::shared_mutex drop_mu;
};

}  // namespace modelfs
