// DiskBlobStore: the persistent, content-addressed block cache behind every read.
//
// Read path: a read is split into 1 MiB blocks (kBlockSize). A present block is read from disk and
// its XXH3 checked; a missing or corrupt one triggers a fetch of the fixed, aligned 4 MiB chunk
// (kChunkSize) that holds it. Aligned chunks mean every request for a byte range of a file is the
// same HTTP request on every machine, so a shared HTTP cache (nginx) in front of the mirror can
// reuse them. Identical in-flight chunk fetches are merged (single flight): a reader that needs a
// chunk being prefetched waits for that fetch instead of sending a second request.
//
// Prefetch along tensor boundaries: for a .safetensors blob whose header is cached, a stream that
// began inside one region (the header or a tensor) prefetches no further than that region's end
// until it crosses it: a loader reading one tensor near the end of a shard (time to first tensor)
// fetches that tensor, not a growing window past it; a reader that moves on to the next tensor is
// a sequential reader again and prefetches as usual.
//
// Prefetch: per blob, up to StreamTracker::kMaxStreams read streams (cache/stream_tracker.h;
// several processes, tensor-parallel ranks and kernel readahead streams read one file at once). A
// read from two kernel readahead windows (at least 1 MiB) behind a stream's position to 16 MiB
// past it continues that stream; from the second sequential read on, chunks ahead of the reader
// are fetched on the prefetch pool, over a window that starts at initial_window and doubles each
// time the reader has to wait for the network, up to max_window. Each chunk in flight is a
// separate HTTP request, so a large file streams over up to fetch_threads connections at once on a
// slow far link, and over few on a fast near one.
//
// Verification, as bytes arrive: the hub's hash (SHA-256 or git blob SHA-1) of a blob is computed
// in file order while it streams in (the Verifier, cache/verifier.h, on its own thread, from
// blocks just written); after the last block, a match marks the blob verified (durably), a
// mismatch drops blocks and logs which host(s) served them. Small blobs (one chunk) are verified
// inline before any byte is returned, so a corrupt small file is never served. A read of a larger
// blob's last block, when every other block is on disk or on the wire, waits for the hash (fail
// closed at the end of a file, see WaitForHashAtEnd): a reader of a whole file never gets its end
// before its hash matched.
//
// Blame: each stored chunk records the host that served it. After a mismatch, if one host served
// every chunk it is proven bad for the blob and everything is dropped; if several did, the one
// blamed least so far (then the one with fewest chunks) is blamed and only its chunks are dropped
// and refetched. Blamed hosts are reported to the source (MirrorSet reads the file from the others)
// and their later answers for the blob are fetched again when a less blamed host exists. So a
// corrupting mirror costs its own chunks, not the whole file, and converges in a round or two.
//
// Verify before read (CacheOptions::verify_before_read): a read of an unverified multi-chunk blob
// first fills the whole blob (every missing chunk, over the fetch pool) and waits for its hash,
// then is served from the verified blocks; no byte of a file is returned before its hash matched.
// The wait ends on success, a failed fetch, no room for the file, verify_attempts mismatches, or
// no progress for kFillStallSeconds. Costs time to first byte (the whole file), not throughput.
//
// Quota (admission control, decided by the SpaceManager, cache/space_manager.h): space is
// reserved against the quota before a block is written, never cleaned up afterwards, so the
// cache's block data never exceeds max_bytes, not even briefly. The
// quota is max_bytes, or a percentage of the cache filesystem's size; independently, a write is
// admitted only if the filesystem keeps min_free_percent of its size free after it (statvfs, so
// other processes filling the disk are seen too). To make room, whole blobs are evicted: first
// verified complete files, then partial ones, least recently used first within each class; blobs
// that are open, have a fetch in flight, are being verified, or belong to a pinned repo (cache/pins.h) are never touched.
// When nothing can be evicted the block is served without being cached; the chunk is then kept in
// memory (the "spill", at most max_spill_chunks across all blobs, oldest dropped first) so that the
// next reads of that chunk and a prefetch ahead of a reader do not fetch it again: a sequential
// reader of a file larger than the cache streams at network speed with each chunk fetched once.
//
// The quota covers the whole cache directory, in 4 KiB pages (what a filesystem allocates): block
// data, charged as above; each blob's index file and an extent page of its data file per 340
// blocks (FilesCharge), charged before BlockFile::Open creates them and refunded when an eviction
// unlinks them; a page per new fan-out directory; the stored metadata (measured at open, then
// charged before each write through ChargeOther); and CacheOptions::reserved_bytes, which tools/
// computes for the files it writes there (the rotated log's bound, the status files). So block
// data gets the quota minus everything else, and `du` of the directory stays within the quota.
//
// Locks: mu_ (store) guards blobs_. The space manager (cache/space_manager.h) has its own lock
// for the quota's accounts, pins and eviction choices. Blob::mu guards the blob's inflight and
// spill maps, streams, opens, provenance (a value, cache/provenance.h) and verifying flag;
// proven_mu_ (a leaf, after Blob::mu) the blame across files; Blob::drop_mu orders chunk writes
// against drops. Order: Blob::drop_mu, then mu_, then the space manager's, then Blob::mu, then
// BlockFile's own lock. None is held across network I/O; mu_ is held while a blob's files are
// opened (and while room is made for them), the space manager's never while evicted blocks are
// dropped or files unlinked.
#pragma once

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <semaphore>
#include <string>
#include <vector>

#include "cache/blob_store.h"
#include "cache/block_file.h"
#include "cache/meta_store.h"
#include "common/thread_pool.h"
#include "fetch/range_source.h"

namespace modelfs {

class PageBufferKeep;  // common/page_buffer.h
class PageBufferPool;
class SpaceManager;    // cache/space_manager.h

// Network fetch unit: 4 MiB aligned chunks. Big enough that a 200 ms RTT costs little per byte with
// several in flight, small enough that a random tensor read fetches little extra.
constexpr uint64_t kChunkSize = 4ull << 20;
constexpr uint32_t kBlocksPerChunk = static_cast<uint32_t>(kChunkSize / kBlockSize);
// What an open fetches of a file's head, kept in memory and never stored (it is not a whole
// block): a safetensors header and the kernel's first reads of it (16 KiB, then 64 KiB more for
// a larger header) fit, so a loader that reads a header and one tensor pays 128 KiB for it and
// not a 1 MiB block. A read that runs past it fetches block 0 as usual.
constexpr uint64_t kHeadBytes = 128ull << 10;
// Uncached byte ranges remembered per file until its hash matches (see NoteServedUnstored).
constexpr size_t kMaxServedUnstored = 4096;


// The first prefetch window of a stream on a source whose time to first byte is latency_us: one
// doubling of `initial` per 10 ms of it (10, 20, 40 ms, ...), capped at `max`. Ranges in flight
// must cover that latency, and growing only after the reader stalled costs a far link seconds.
uint64_t PrefetchStartWindow(uint64_t latency_us, uint64_t initial, uint64_t max);

struct CacheOptions {
  std::string dir;                        // blobs live in dir/blobs/
  uint64_t max_bytes = 0;                 // quota for the whole cache directory; 0 = no limit
  double max_fs_percent = 0;              // if > 0: quota = this % of the cache filesystem's size
                                          // (overrides max_bytes), resolved when the store opens
  double min_free_percent = 0;            // keep this % of the cache filesystem free; 0 = no check
  // Of the quota, bytes kept for files in dir that others write (the log, the status files):
  // the most they can take, computed by tools/ (see "The quota covers the whole cache directory").
  uint64_t reserved_bytes = 0;
  unsigned fetch_threads = 16;            // prefetch workers = parallel range requests
  uint64_t initial_window = 8ull << 20;   // first prefetch window: 2 chunks
  uint64_t max_window = 128ull << 20;     // per-stream cap: 32 chunks in flight
  // The kernel's readahead per file (the mount's): a read of one tensor makes the kernel read up
  // to two of these past its end, which must not turn that reader into a sequential stream.
  uint64_t kernel_readahead = 8ull << 20;
  // Memory: fetch buffers in flight, and chunks kept in memory because they could not be cached
  // (quota full of open files, disk full) so a reader consumes a prefetch window that went
  // uncached without fetching it twice. Defaults: 22 + 7 chunks, with 12 reads of 6 MiB (a reply,
  // a block buffer, a chunk of a fetch of their own: max_network_reads) = 192 MiB (--memory-budget).
  unsigned max_inflight_chunks = 22;
  unsigned max_spill_chunks = 7;
  // Reads that start a fetch of their own at once (0 = no bound), each with a demand fetch's chunk
  // buffer in flight: the memory budget gives it the count of FUSE reply buffers. A read past it
  // waits for a slot holding nothing; reads of cached bytes, and reads that wait for bytes already
  // on the wire, never take one. A read that already holds the buffer it copies into (ReadDest)
  // does not wait: it goes over the bound.
  unsigned max_network_reads = 12;
  // No byte of a multi-chunk blob is returned before its whole-file hash matched (see Read).
  bool verify_before_read = false;
  // Opening a multi-chunk blob starts a background fill of all of it (over the fetch pool, within
  // max_inflight_chunks): loaders that read every tensor in their own order (mmap, random) then
  // find the bytes cached at sequential-streaming speed. Costs whole files for partial readers.
  bool fill_on_open = false;
  // Strict reads fail after this many whole-file hash failures in a row (each refetches the
  // chunks of the host blamed for it from the others, or the whole file; see Blame).
  unsigned verify_attempts = 4;
  // Not used by DiskBlobStore itself; the engine (tools/engine.cc) reads them to build the stack.
  bool offline = false;                   // never touch the network (cache/offline.h)
  int64_t revision_ttl_s = PersistentHubApi::kDefaultRevisionTtlSeconds;  // its revision TTL, seconds

  bool operator==(const CacheOptions&) const = default;  // tools/ checks its defaults against these
};

struct CacheStats {
  uint64_t hit_bytes = 0;       // served from disk blocks
  uint64_t miss_bytes = 0;      // served from fetched chunks
  uint64_t fetched_bytes = 0;   // received from the network (demand + prefetch)
  uint64_t fetches = 0;         // chunk fetches issued
  uint64_t corrupt_blocks = 0;  // cached blocks that failed XXH3 (then refetched)
  uint64_t verified = 0;        // blobs whose whole-file hash matched
  uint64_t verify_failures = 0; // blobs whose whole-file hash did not match (dropped)
  uint64_t evicted_bytes = 0;   // counted when the victims are chosen, before their drop
  uint64_t releasing_bytes = 0; // charge of victims being dropped now (on disk until dropped)
  uint64_t uncached_bytes = 0;  // fetched but not stored (quota or disk error)
  uint64_t used_bytes = 0;      // block data currently cached (4 KiB pages)
  uint64_t quota_bytes = 0;     // the resolved quota (0 = none)
  uint64_t overhead_bytes = 0;  // charged besides block data: index files, directories,
                                // stored metadata, reserved_bytes
  uint64_t peak_used_bytes = 0; // highest used_bytes + overhead_bytes since open (never above
                                // quota_bytes)
  uint64_t refused_bytes = 0;   // blocks not cached because no room could be made
  uint64_t distrusted_refetches = 0;  // answers fetched again: their host was blamed for the blob
  uint64_t hashed_bytes = 0;    // bytes fed to whole-file hashes (once per byte per pass)
  uint64_t spliced_bytes = 0;   // bytes handed out as FileSpans (ReadOrSpan), also in hit_bytes
  uint64_t waiting_reads = 0;   // reads waiting for their bytes on the wire now
};

class DiskBlobStore : public BlobStore {
 public:
  // Creates dir/blobs if needed and accounts the blobs already there. `source` must outlive this.
  static Result<std::unique_ptr<DiskBlobStore>> Open(const CacheOptions& opts, RangeSource* source);
  ~DiskBlobStore() override;

  Status Read(const BlobRef& blob, uint64_t offset, size_t len, char* buf, size_t* n) override;
  Status ReadOrSpan(const BlobRef& blob, uint64_t offset, size_t len, ReadDest dest, size_t* n,
                    FileSpan* span) override;
  void OpenBlob(const BlobRef& blob) override;
  void PrepareBlob(const BlobRef& blob) override;
  void HintNext(const BlobRef& blob, const BlobRef& next) override;
  void HintLoad(const BlobRef& blob) override;
  void CloseBlob(const BlobRef& blob) override;

  CacheStats Stats() const;
  // True if the blob with this content key is fully cached and its whole-file hash matched.
  bool IsVerified(const std::string& key) override;
  // Charges `bytes` of a file that the caller is about to write into the cache directory (stored
  // metadata) against the quota, evicting blocks to make room; never refunded. False (nothing
  // charged) if no room can be made: the caller does not write. Thread-safe.
  bool ChargeOther(uint64_t bytes);
  // Blocks until no fetch or verification is queued or running, or timeout; true if idle.
  bool WaitIdle(int timeout_ms);
  // Called (from a background thread) after a blob's blocks were dropped because its hash did
  // not match, so the filesystem can drop the kernel's cached pages of that content.
  void SetInvalidateCallback(std::function<void(const std::string& key)> cb) override;
  uint64_t HashFailures(const BlobRef& blob) override;
  Status CompleteForReader(const BlobRef& blob) override;

 private:
  struct Inflight;
  struct Blob;
  class CacheDirDisk;
  class Verifier;  // cache/verifier.h

  DiskBlobStore(const CacheOptions& opts, RangeSource* source);
  std::string BlobDir(const std::string& key) const;
  std::shared_ptr<Blob> GetBlob(const BlobRef& ref);
  // The range in flight (or spilled) that brings block i, starting one (from block i to the end
  // of its chunk, on the demand pool) unless there is one; null if block i is on disk after all.
  std::shared_ptr<Inflight> FetchBlock(const std::shared_ptr<Blob>& b, uint32_t i, uint32_t last = UINT32_MAX);
  // Requires b.mu: the range in flight or spilled that holds `block`, or null.
  std::shared_ptr<Inflight> CoveringLocked(Blob& b, uint32_t block);
  // Requires b.mu: registers a new range of the blocks in [lo, hi] that are neither on disk nor
  // covered, from the first such block on, within its chunk; null if there is none. The caller
  // must Launch it.
  std::shared_ptr<Inflight> NewSpanLocked(Blob& b, uint32_t lo, uint32_t hi,
                                          uint32_t max_blocks = kBlocksPerChunk);
  // Requires b.mu: registers ranges for the missing blocks of [from, to) while the in-flight
  // budget allows (max_inflight chunks in flight, 0: CacheOptions::max_inflight_chunks), each at
  // most span_blocks blocks (and never across a chunk); returns the offset up to which everything
  // is on disk or scheduled.
  uint64_t ScheduleLocked(Blob& b, uint64_t from, uint64_t to, std::vector<std::shared_ptr<Inflight>>* todo,
                          uint32_t span_blocks = kBlocksPerChunk, uint32_t max_inflight = 0);
  // Runs RunFetch on the demand pool (a reader waits for it) or the prefetch pool.
  void Launch(const std::shared_ptr<Blob>& b, const std::shared_ptr<Inflight>& f, bool demand);
  // One range's fetch, in four steps: the transfer (FetchRange), the hand-over to the readers
  // waiting on f, the disk (KeepFetched), and the end (EndFetch: out of the in-flight map, the
  // counters readers wait on, the hash, the budget, the fill).
  void RunFetch(const std::shared_ptr<Blob>& b, const std::shared_ptr<Inflight>& f);
  // What a range's transfer ended with.
  struct Fetched {
    Status status;
    std::string served_by;
    bool untrusted = false;  // streamed to readers from a host blamed for this blob: not cached
  };
  // The transfer into f's buffer: block 0's head reused, a blamed host's answer asked again, a
  // one-range blob hashed and asked again if wrong. Bytes are handed over as they land if `stream`.
  Fetched FetchRange(const std::shared_ptr<Blob>& b, const std::shared_ptr<Inflight>& f, bool stream,
                     std::chrono::steady_clock::time_point t0);
  // Caches what arrived, unless the blob's blocks were dropped since it was asked for
  // (`generation`) or its host is not trusted; spills it if there is no room. True if refused.
  bool KeepFetched(const std::shared_ptr<Blob>& b, const std::shared_ptr<Inflight>& f, uint64_t generation,
                   const Fetched& got, std::chrono::steady_clock::time_point t0);
  void EndFetch(const std::shared_ptr<Blob>& b, const std::shared_ptr<Inflight>& f, const Status& st, bool refused);
  // Cross-file lookahead (HintNext): a stream that read `from` from its start has scheduled it to
  // its end, so the next file's first `window` bytes are fetched now, and a cursor at its offset 0
  // carries the window on to its reader. Tops up on every call until the next file has a reader;
  // what is left of the window once the next file is all scheduled goes to the one after it
  // (`depth` files deep at most).
  void Lookahead(const std::shared_ptr<Blob>& from, uint64_t window, int depth = 2);
  // Starts a file nobody has open with a prefetch window from its first byte (a lookahead stream,
  // into free room only); `after` names what led here, for the log. Returns what is left of the
  // window once all of the file is scheduled.
  uint64_t SeedWindow(const std::shared_ptr<Blob>& n, uint64_t window, const char* after);
  // The head fetch an open starts (kHeadBytes, memory only), and a read served from it: true if
  // [offset, end) lies in it and arrived.
  void RunHeadFetch(const std::shared_ptr<Blob>& b, const std::shared_ptr<Inflight>& f);
  bool ReadHead(const std::shared_ptr<Blob>& b, uint64_t offset, uint64_t end, ReadDest& dest);
  // Writes the range's missing blocks (from block `first`); returns false if any could not be cached.
  bool StoreRange(const std::shared_ptr<Blob>& b, uint32_t first, const char* data, uint64_t len);
  void Spill(const std::shared_ptr<Blob>& b, const std::shared_ptr<Inflight>& f);
  // The measured time to a range's first byte, and the first prefetch window it calls for.
  void NoteLatency(std::chrono::steady_clock::duration d);
  uint64_t StartWindow() const;
  // Tracks the read's stream and schedules its prefetch. Returns the last block a demand fetch for
  // this read may bring (UINT32_MAX: to the end of the chunk; less for the kernel's readahead past
  // the end of a tensor, where the blocks after the read's own are not wanted).
  uint32_t Prefetch(const std::shared_ptr<Blob>& b, uint64_t off, uint64_t len);
  void GrowWindow(const std::shared_ptr<Blob>& b, uint64_t end);
  // Learns a .safetensors blob's tensor boundaries from its cached header (once its head is on
  // disk), so prefetch of a stream that began inside a tensor stops at that tensor's end.
  void MaybeLoadLayout(const std::shared_ptr<Blob>& b);
  // Whether blocks [offset, end) are all on disk and checked in this run, and the cache file
  // reaches `end`; with `hold`, also fills *span (holding drop_mu shared) and counts the bytes.
  bool TakeSpan(const std::shared_ptr<Blob>& b, uint64_t offset, uint64_t end, bool hold, FileSpan* span);
  // Verify before read: fetches every missing chunk and waits until the blob verified; an error
  // if a fetch failed, there is no room, or the hash failed verify_attempts times.
  Status FillAndVerify(const std::shared_ptr<Blob>& b, uint32_t attempts = 0);
  // Bytes handed to readers but not stored: remembered (NoteServedUnstored) and compared with the
  // file once its hash matched (CheckServedUnstored).
  void NoteServedUnstored(const std::shared_ptr<Blob>& b, uint64_t offset, const char* data, uint64_t len);
  void CheckServedUnstored(const std::shared_ptr<Blob>& b);
  // Has the filesystem drop the kernel's cached pages of this content (the invalidate callback),
  // on the notify pool: invalidating waits for page locks a pending FUSE read may hold.
  void DropKernelPages(const std::string& key);
  // Schedules the missing ranges of b in file order, up to max_inflight chunks in flight (0: the
  // whole budget).
  void ScheduleFill(const std::shared_ptr<Blob>& b, uint32_t max_inflight = 0);
  // Chunks in flight a fill for a reader in its own order may bring the total to: half the budget.
  uint32_t SharedFillBudget() const { return std::max(1u, opts_.max_inflight_chunks / 2); }
  // Starts fetching the blob's first kHeadBytes (an open's, or a loader's after HintLoad), or
  // lets the source resolve its URL if the head is there already.
  void FetchHead(const std::shared_ptr<Blob>& b, const BlobRef& ref);
  // After a fetch of b ended: keeps a fill_on_open fill going (see CacheOptions::fill_on_open).
  void ContinueFill(const std::shared_ptr<Blob>& b, bool last_ok);
  // Fail closed at the end of a file: a read of the last block of a blob whose every block is on
  // disk or on the wire waits until the whole-file hash matched; an error if it failed since
  // `failures0` (the blob's hash failures when the read began) or nothing moved for
  // kFillStallSeconds. Returns at once for a reader that did not bring the whole file in, and
  // once a reader in its own tensor order was seen in the file (Blob::own_order).
  Status WaitForHashAtEnd(const std::shared_ptr<Blob>& b, uint64_t failures0);
  // Allocated bytes of the cache directory outside the blob files (directories, stored metadata,
  // pins), measured at open.
  uint64_t MeasureOther() const;
  void NoteCorruption(const std::shared_ptr<Blob>& b);  // logs newly found bad blocks
  // After a hash mismatch: the hosts whose chunks to drop (empty = all), recording the blame
  // (Provenance::Blame, with the blame across files); *sources receives every host that served a
  // chunk.
  std::set<std::string> Blame(const std::shared_ptr<Blob>& b, std::string* sources);
  // True if `host` is blamed for this blob more than another host that served it (so its answer
  // is fetched again elsewhere); takes b.mu.
  bool Distrusted(const std::shared_ptr<Blob>& b, const std::string& host);
  // Drops the blob's blocks (only the chunks served by `only`, if not empty) and reports the
  // hosts that served them to the source.
  void ForgetBlocks(const std::shared_ptr<Blob>& b, const std::set<std::string>& only = {});
  // Charges the blobs left by earlier runs (their index headers and entries only).
  void ScanExisting();

  const CacheOptions opts_;
  RangeSource* const source_;
  std::unique_ptr<ThreadPool> pool_;         // prefetch fetches
  std::unique_ptr<std::counting_semaphore<>> network_reads_;  // CacheOptions::max_network_reads; null: none
  // Recycled chunk buffers (shared: Inflights return theirs). Allocating one per fetch zero-filled
  // and faulted it in afresh (cold reads ran at half speed), or left freed buffers scattered over
  // glibc's per-thread arenas (RSS grew far past what was in use).
  std::shared_ptr<PageBufferKeep> buffer_keep_;  // what the two pools below keep, together
  std::shared_ptr<PageBufferPool> buffers_;
  std::shared_ptr<PageBufferPool> block_buffers_;  // one-block ranges' (kBlockSize each)
  std::unique_ptr<Verifier> verifier_;       // whole-file hashing, on a pool of its own
  std::unique_ptr<ThreadPool> notify_pool_;  // invalidate callbacks (may wait on kernel page locks)
  // Fetches a reader waits for (its own block, the tensor it started, a just-opened file's head):
  // never queued behind prefetch. Declared last: destroyed first.
  std::unique_ptr<ThreadPool> demand_pool_;

  // Blame across files, this run (cache/provenance.h). Its own lock, taken after a Blob's mu.
  std::mutex proven_mu_;
  std::map<std::string, uint64_t> host_blame_;  // a HostBlame
  // The cache directory as the space manager sees it (statvfs, the pins, unlinking a blob's
  // files), and the space manager: the quota's accounts, admission, eviction, pins, the floor.
  // Created by Open once the quota is resolved; the manager's lock comes after mu_.
  std::unique_ptr<CacheDirDisk> space_disk_;
  std::unique_ptr<SpaceManager> space_;
  mutable std::mutex mu_;
  std::map<std::string, std::shared_ptr<Blob>> blobs_;  // blobs touched since start
  // The fetch buffers of ranges queued or running, in blocks (memory bound): a one-block range
  // has a block's buffer (1), any other a chunk's (kBlocksPerChunk). The prefetch budget is
  // max_inflight_chunks chunks of it, so a far link's tensor, fetched in one-block ranges over
  // many connections, has four times as many ranges on the wire as chunks would allow.
  std::atomic<unsigned> inflight_blocks_{0};
  std::atomic<unsigned> waiting_reads_{0};    // reads waiting for their bytes on the wire now
  std::atomic<unsigned> busy_{0};             // fetch + verify tasks queued or running
  std::atomic<uint64_t> latency_us_{0};       // moving average time to a range's first byte
  // Spilled chunks, oldest first (blob, chunk index); each is also in its Blob::spill. Guarded by
  // spill_mu_, taken before any Blob::mu and never with mu_.
  std::mutex spill_mu_;
  std::deque<std::pair<std::weak_ptr<Blob>, uint64_t>> spill_fifo_;
  std::mutex cb_mu_;  // guards invalidate_cb_; held while it runs (a leaf lock)
  std::function<void(const std::string&)> invalidate_cb_;

  std::atomic<uint64_t> hit_bytes_{0}, miss_bytes_{0}, fetched_bytes_{0}, fetches_{0},
      verified_{0}, verify_failures_{0}, uncached_bytes_{0}, corrupt_{0},
      refused_bytes_{0}, distrusted_refetches_{0}, hashed_bytes_{0}, spliced_bytes_{0};
};

}  // namespace modelfs
