// DiskBlobStore, the coordinator: opening the store (quota, free-space floor, what is on disk),
// the blob table, and reads: from checked blocks on disk (or spans of them), from the head an open
// fetched, from ranges on the wire or in the spill, with a demand fetch for what is missing. The
// other rooms are listed in disk_blob_store_internal.h.
#include "cache/disk_blob_store_internal.h"

#include <errno.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <shared_mutex>
#include <thread>

#include "common/file_util.h"
#include "common/log.h"

namespace modelfs {
namespace {

// 1 MiB buffers kept for reads of partial blocks, in use and free. One per read copying from disk:
// the FUSE adapter bounds those (MountOptions::reply_buffers, at most 64), so this bounds nothing
// there; the pool holds what the busiest moment needed.
constexpr size_t kScratchKept = 64;
// The longest a read waits for a slot among the reads waiting for the network before it goes over
// the bound (CacheOptions::max_network_reads): the holders' fetches time out well before.
constexpr int kNetworkSlotWaitS = 60;

}  // namespace

Result<std::unique_ptr<DiskBlobStore>> DiskBlobStore::Open(const CacheOptions& opts,
                                                           RangeSource* source) {
  Status s = MkdirP(opts.dir + "/blobs");
  if (!s.ok() && access(opts.dir.c_str(), F_OK) != 0) return s;
  if (!s.ok()) {  // read-only or full cache filesystem: serve what is there, the rest uncached
    MODELFS_LOG(kWarn, "cache %s is not writable (%s): reads not cached", opts.dir.c_str(),
                s.ToString().c_str());
  }
  std::unique_ptr<DiskBlobStore> store(new DiskBlobStore(opts, source));
  SpaceManager::Limits limits;
  limits.quota_bytes = opts.max_bytes;
  if (opts.max_fs_percent > 0 || opts.min_free_percent > 0) {
    struct statvfs vfs;
    if (statvfs(opts.dir.c_str(), &vfs) != 0) {
      return Status::IoError("statvfs " + opts.dir + ": " + strerror(errno));
    }
    double fs_size = static_cast<double>(vfs.f_blocks) * static_cast<double>(vfs.f_frsize);
    if (opts.max_fs_percent > 0) {
      limits.quota_bytes = static_cast<uint64_t>(fs_size * std::min(opts.max_fs_percent, 100.0) / 100);
    }
    limits.min_free_bytes = static_cast<uint64_t>(fs_size * std::min(opts.min_free_percent, 100.0) / 100);
  }
  store->space_disk_ = std::make_unique<CacheDirDisk>(store.get());
  store->space_ = std::make_unique<SpaceManager>(limits, store->space_disk_.get());
  store->ScanExisting();
  store->space_->AddOverhead(opts.reserved_bytes + store->MeasureOther());
  const SpaceManager::Totals t = store->space_->totals();
  MODELFS_LOG(kInfo, "cache %s: quota %llu bytes (0 = none) for the whole directory, keeping %llu "
              "bytes of its filesystem free, %llu bytes cached, %llu bytes of index files, "
              "directories, metadata and reserve (log, status)", opts.dir.c_str(),
              (unsigned long long)limits.quota_bytes, (unsigned long long)limits.min_free_bytes,
              (unsigned long long)t.used, (unsigned long long)t.overhead);
  if (limits.quota_bytes && t.overhead >= limits.quota_bytes) {
    MODELFS_LOG(kWarn, "cache quota %llu bytes leaves no room for blocks after %llu bytes of index "
                "files, metadata and reserve (the log's --log-max-size, status files): reads are "
                "served uncached", (unsigned long long)limits.quota_bytes,
                (unsigned long long)t.overhead);
  }
  return store;
}

DiskBlobStore::DiskBlobStore(const CacheOptions& opts, RangeSource* source)
    : opts_(opts),
      source_(source),
      pool_(new ThreadPool(std::max(1u, opts.fetch_threads))),
      network_reads_(opts.max_network_reads ? std::make_unique<std::counting_semaphore<>>(opts.max_network_reads)
                                            : nullptr),
      // Chunk and one-block buffers are kept (in use and free together) within the chunks the
      // budget gives fetches and the spill; more in use are unmapped as they come back.
      buffer_keep_(std::make_shared<PageBufferKeep>(
          static_cast<size_t>(opts.max_inflight_chunks + opts.max_spill_chunks) * kChunkSize)),
      buffers_(std::make_shared<PageBufferPool>(kChunkSize, buffer_keep_)),
      block_buffers_(std::make_shared<PageBufferPool>(kBlockSize, buffer_keep_)),
      verifier_(std::make_unique<Verifier>(this)),
      notify_pool_(new ThreadPool(1)),
      demand_pool_(new ThreadPool(std::max(1u, opts.fetch_threads))) {}

DiskBlobStore::~DiskBlobStore() {
  // Stop background work before members it touches go away.
  demand_pool_.reset();
  pool_.reset();
  verifier_.reset();
  notify_pool_.reset();
}

std::string DiskBlobStore::BlobDir(const std::string& key) const {
  // Fan out by the first two hex digits of the hash so no directory grows huge.
  size_t dash = key.find('-');
  std::string hex = dash == std::string::npos ? key : key.substr(dash + 1);
  return opts_.dir + "/blobs/" + hex.substr(0, 2);
}

std::shared_ptr<DiskBlobStore::Blob> DiskBlobStore::GetBlob(const BlobRef& ref) {
  std::shared_ptr<Blob> b;
  {
    std::lock_guard<std::mutex> l(mu_);
    auto it = blobs_.find(ref.key);
    if (it != blobs_.end()) {
      space_->Touch(ref.key);
      return it->second;
    }
    b = std::make_shared<Blob>();
    b->ref = ref;
    b->streams = StreamTracker(StreamTracker::Limits{kBlockSize, kChunkSize, opts_.initial_window,
                                                     opts_.max_window, opts_.kernel_readahead});
    std::string dir = BlobDir(ref.key);
    // The quota covers the blob's own files: charged before they are created (the index is
    // written at once) unless they are on disk and charged already.
    Status s = space_->ChargeFiles(ref.key, ref.size, access(dir.c_str(), F_OK) != 0)
                   ? MkdirP(dir)
                   : Status::IoError("no room in the cache quota for its index");
    if (s.ok()) {
      auto f = BlockFile::Open(dir, ref.key, ref.size);
      if (f.ok()) {
        b->file = std::move(f).value();
      } else {
        s = f.status();
      }
    }
    if (!s.ok()) {
      MODELFS_LOG(kWarn, "cache unusable for %s, serving uncached: %s", ref.key.c_str(),
                  s.ToString().c_str());
      if (access((dir + "/" + ref.key + ".idx").c_str(), F_OK) != 0) {  // nothing created: refund
        space_->RefundFiles(ref.key);
      }
      // (A new directory's page stays charged: the directory may exist now.)
    }
    blobs_[ref.key] = b;
    space_->Attach(ref.key, b, b->file ? Charge(b->file->PresentBytes()) : 0, b->file && b->file->verified());
  }
  verifier_->Schedule(b);  // complete but unverified (e.g. a crash before verification)
  return b;
}

void DiskBlobStore::OpenBlob(const BlobRef& ref) {
  auto b = GetBlob(ref);
  bool fill = false;
  {
    std::lock_guard<std::mutex> l(b->mu);
    b->opens++;
    if (opts_.fill_on_open && !b->filling && ref.size > kChunkSize && b->file && !b->file->verified() &&
        !b->file->AllPresent()) {
      b->filling = fill = true;
    }
  }
  if (fill) {
    MODELFS_LOG(kDebug, "filling %s %s in the background", ref.repo.Id().c_str(), ref.path.c_str());
    ScheduleFill(b);
  }
  FetchHead(b, ref);
}

void DiskBlobStore::CloseBlob(const BlobRef& ref) {
  auto b = GetBlob(ref);
  std::lock_guard<std::mutex> l(b->mu);
  if (b->opens > 0) b->opens--;
  if (b->opens == 0) b->head.reset();
}

bool DiskBlobStore::TakeSpan(const std::shared_ptr<Blob>& b, uint64_t offset, uint64_t end, bool hold,
                             FileSpan* span) {
  if (!b->file) return false;
  // Held until the kernel has copied the bytes: a drop of the blob's blocks (which takes drop_mu
  // exclusively) waits, so no block is punched out under the copy. Eviction never takes a blob
  // with an open handle, and a FUSE read always has one.
  struct Hold {
    std::shared_ptr<Blob> blob;
    std::shared_lock<std::shared_mutex> drop;
  };
  std::shared_ptr<Hold> h;
  if (hold) h = std::make_shared<Hold>(Hold{b, std::shared_lock<std::shared_mutex>(b->drop_mu)});
  if (!b->file->Checked(static_cast<uint32_t>(offset / kBlockSize), static_cast<uint32_t>((end - 1) / kBlockSize))) {
    return false;
  }
  // A cache file cut short under the daemon (truncated, a disk fault) would splice short, and the
  // reader would take that for EOF: such a read is copied, which finds the blocks unreadable and
  // fetches them again.
  struct stat st;
  if (fstat(b->file->data_fd(), &st) != 0 || static_cast<uint64_t>(st.st_size) < end) return false;
  if (!hold) return true;
  span->fd = b->file->data_fd();
  span->pos = offset;
  span->len = static_cast<size_t>(end - offset);
  span->hold = std::move(h);
  hit_bytes_ += span->len;
  spliced_bytes_ += span->len;
  return true;
}

Status DiskBlobStore::Read(const BlobRef& ref, uint64_t offset, size_t len, char* buf, size_t* n) {
  return ReadOrSpan(ref, offset, len, buf, n, nullptr);
}

Status DiskBlobStore::ReadOrSpan(const BlobRef& ref, uint64_t offset, size_t len, ReadDest dest, size_t* n,
                                FileSpan* span) {
  *n = 0;
  if (offset >= ref.size || len == 0) return Status::Ok();
  uint64_t end = std::min<uint64_t>(ref.size, offset + len);
  auto b = GetBlob(ref);
  const uint64_t failures0 = b->hash_failures.load();
  // Verify before read: a blob larger than one chunk is filled and hashed before any byte of it
  // is returned, and then served only from its verified blocks (one chunk is verified inline by
  // RunFetch anyway). A block that went missing since (evicted, corrupt on disk) sends the read
  // back to the fill; a few such rounds in a row means something keeps destroying the blocks.
  bool strict = opts_.verify_before_read && ref.size > kChunkSize;
  // A file that failed its hash in this run is read that way too until it verifies: a reader
  // that comes after a failure waits for a refetch that proved itself, rather than being given
  // bytes of a round that may fail again (when both mirrors served the file, blame can first
  // fall on the wrong one). If the fill cannot complete (no room, a fetch failed), it streams
  // as before, and the end-of-file check still applies.
  const bool after_failure = !strict && failures0 > 0 && ref.size > kChunkSize && b->file &&
                             !b->file->verified();
  strict = strict || after_failure;
  int strict_rounds = 0;
  uint32_t demand_last = UINT32_MAX;
  // Fail closed at the end of a file: a reader that brought in all of it gets its last bytes only
  // once its hash matched (WaitForHashAtEnd; a one-chunk blob was hashed before any byte of it
  // was served, a strict reader before any byte at all).
  auto gate_at_end = [&]() -> Status {
    if (strict || end != ref.size || ref.size <= kChunkSize || !b->file || b->file->verified()) return Status::Ok();
    return WaitForHashAtEnd(b, failures0);
  };
  if (strict) {
    Status s = FillAndVerify(b);
    if (!s.ok() && (!after_failure || s.code() == Code::kCorruption)) return s;
    if (!s.ok()) strict = false;
  }
  if (!strict) {
    if (ReadHead(b, offset, end, dest)) {  // a header reader's first reads: no cursor, no block 0
      *n = end - offset;
      return Status::Ok();
    }
    demand_last = Prefetch(b, offset, end - offset);
  }
  // Every block of the read on disk and checked in this run: the kernel copies them from the
  // cache file itself. A strict reader only once the file verified. The end-of-file check comes
  // first (no hold while waiting for the hash: a failing hash must be able to drop the blocks).
  if (span != nullptr && span->fd_ok && b->file && (!strict || b->file->verified()) &&
      TakeSpan(b, offset, end, /*hold=*/false, span)) {
    if (Status s = gate_at_end(); !s.ok()) return s;
    if (TakeSpan(b, offset, end, /*hold=*/true, span)) {
      *n = span->len;
      return Status::Ok();
    }
  }

  // A partial block is read whole (its XXH3 covers all of it) into a buffer from a pool: a fresh
  // zero-filled 1 MiB per read was the daemon's largest CPU cost on cold reads, and one kept per
  // thread cost 1 MiB of RSS per FUSE worker (64 by default). A scratch buffer, like dest's, is
  // taken only for a block on disk and given back before any wait on the network: in use at once,
  // at most one per read copying, which the FUSE adapter bounds (MountOptions::reply_buffers).
  static PageBufferPool* const scratch_pool = new PageBufferPool(kBlockSize, kScratchKept);  // never freed
  struct Scratch {
    PageBuffer buf;
    char* get() {
      if (!buf) buf = scratch_pool->Get();
      return buf.get();
    }
    void Release() {
      if (buf) scratch_pool->Put(std::move(buf));
    }
    ~Scratch() { Release(); }
  } scratch;
  // A slot among the reads that fetch for themselves (CacheOptions::max_network_reads), taken
  // before this read's own fetch and kept to the end of the read. The wait is bounded: the slots'
  // holders wait on fetches, which time out.
  struct NetworkSlot {
    std::counting_semaphore<>* sem;
    bool held = false;
    void Take(bool may_wait) {
      if (sem == nullptr || held) return;
      held = may_wait ? sem->try_acquire_for(std::chrono::seconds(kNetworkSlotWaitS)) : sem->try_acquire();
    }
    ~NetworkSlot() {
      if (held) sem->release();
    }
  } slot{network_reads_.get()};
  std::shared_ptr<Inflight> last;  // the range fetched for an earlier block of this read
  bool waited = false;             // this read had to wait for the network
  int refetches = 0;               // blocks that vanished between a miss and their fetch
  for (uint64_t pos = offset; pos < end;) {
    uint32_t i = static_cast<uint32_t>(pos / kBlockSize);
    uint64_t bstart = static_cast<uint64_t>(i) * kBlockSize;
    uint64_t blen = std::min<uint64_t>(kBlockSize, ref.size - bstart);
    uint64_t take = std::min(blen - (pos - bstart), end - pos);
    if (!last || !last->Covers(i)) {
      last.reset();
      if (b->file && b->file->Present(i)) {
        // dest's buffer is taken here, for a block on disk, or below once fetched bytes arrived.
        char* out = dest.get() + (pos - offset);
        bool whole = pos == bstart && take == blen;
        char* target = whole ? out : scratch.get();
        if (b->file->ReadBlock(i, target)) {
          if (!whole) memcpy(out, target + (pos - bstart), take);
          hit_bytes_ += take;
          pos += take;
          continue;
        }
        NoteCorruption(b);
      }
      scratch.Release();
      if (strict) {
        if (++strict_rounds > 3) {
          return Status::IoError("blocks of " + ref.path + " keep vanishing after verification");
        }
        Status s = FillAndVerify(b);
        if (!s.ok()) return s;
        continue;  // read this block again, now verified
      }
      // A read that is about to start a fetch of its own (no prefetch or other reader has its
      // block on the wire) takes a slot first: that fetch's chunk buffer is what the bound is for.
      // Reads that wait for bytes already on the wire (a tensor's or a stream's prefetch) cost no
      // memory and take none: a far loader's many faults wait on them at once. Holding dest's
      // buffer, a read never waits for a slot (its holders may wait for a buffer): it goes over.
      bool on_wire;
      {
        std::lock_guard<std::mutex> l(b->mu);
        on_wire = CoveringLocked(*b, i) != nullptr;
      }
      if (!on_wire) slot.Take(/*may_wait=*/!dest.has_buffer());
      last = FetchBlock(b, i, demand_last);
      waited = true;
      if (!last) {  // stored meanwhile by another fetch: read it from disk
        if (++refetches > 8) return Status::IoError("blocks of " + ref.path + " keep vanishing");
        continue;
      }
      // Demand first: only this read's bytes are waited for; the rest of the range follows.
      waiting_reads_++;
      const bool arrived = last->WaitFor(end);
      waiting_reads_--;
      if (!arrived) {
        std::lock_guard<std::mutex> l(last->mu);
        if (!last->status.ok()) return last->status;
        return Status::Unavailable("fetch of " + ref.path + " ended short");
      }
    }
    if (span != nullptr && pos == offset && last->end >= end) {
      // All of the read in this one fetch buffer: the reply is written from there, with no
      // reply buffer (readers waiting for one would hold their fetch buffers meanwhile).
      span->mem = last->data.get() + (offset - last->begin);
      span->len = static_cast<size_t>(end - offset);
      span->hold = last;
      miss_bytes_ += end - offset;
      pos = end;
      break;
    }
    memcpy(dest.get() + (pos - offset), last->data.get() + (pos - last->begin), take);
    miss_bytes_ += take;
    pos += take;
  }
  if (waited) GrowWindow(b, end);
  if (Status s = gate_at_end(); !s.ok()) return s;
  *n = end - offset;
  return Status::Ok();
}

void DiskBlobStore::SetInvalidateCallback(std::function<void(const std::string&)> cb) {
  std::lock_guard<std::mutex> l(cb_mu_);
  invalidate_cb_ = std::move(cb);
}

bool DiskBlobStore::WaitIdle(int timeout_ms) {
  // Polling keeps busy_ a plain atomic, usable under any lock; only tests and tools call this.
  auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
  while (busy_.load() != 0) {
    if (std::chrono::steady_clock::now() >= deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  return true;
}

CacheStats DiskBlobStore::Stats() const {
  CacheStats s;
  s.hit_bytes = hit_bytes_;
  s.miss_bytes = miss_bytes_;
  s.fetched_bytes = fetched_bytes_;
  s.fetches = fetches_;
  s.verified = verified_;
  s.verify_failures = verify_failures_;
  s.uncached_bytes = uncached_bytes_;
  const SpaceManager::Totals t = space_->totals();
  s.evicted_bytes = t.evicted;
  s.releasing_bytes = t.releasing;
  s.used_bytes = t.used;
  s.peak_used_bytes = t.peak;
  s.overhead_bytes = t.overhead;
  s.quota_bytes = space_->quota();
  std::lock_guard<std::mutex> l(mu_);
  s.refused_bytes = refused_bytes_;
  s.distrusted_refetches = distrusted_refetches_;
  s.hashed_bytes = hashed_bytes_;
  s.spliced_bytes = spliced_bytes_;
  s.waiting_reads = waiting_reads_;
  uint64_t corrupt = 0;
  for (auto& [k, b] : blobs_)
    if (b->file) corrupt += b->file->corrupt_blocks();
  s.corrupt_blocks = corrupt;
  return s;
}

}  // namespace modelfs