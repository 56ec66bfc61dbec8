#include "cache/disk_blob_store_internal.h"

#include <dirent.h>
#include <errno.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>
#include <xxhash.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <shared_mutex>
#include <thread>
#include <tuple>

#include "cache/hash.h"
#include "cache/pins.h"
#include "cache/safetensors.h"
#include "common/file_util.h"
#include "common/log.h"

namespace modelfs {
namespace {

// A fetched small blob whose hash mismatches is fetched again this many times before EIO.
constexpr int kSmallBlobRetries = 2;
// An answer from a host blamed for this blob's hash failure is fetched again up to this many times
// (the source tries that host last) before it is used.
constexpr int kDistrustedRefetches = 2;
// 1 MiB buffers kept for reads of partial blocks, in use and free. One per concurrent read: the FUSE
// adapter bounds those (MountOptions::reply_buffers, at most 64), so this bounds nothing there;
// the pool holds what the busiest moment needed.
constexpr size_t kScratchKept = 64;

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
  store->quota_bytes_ = opts.max_bytes;
  if (opts.max_fs_percent > 0 || opts.min_free_percent > 0) {
    struct statvfs vfs;
    if (statvfs(opts.dir.c_str(), &vfs) != 0) {
      return Status::IoError("statvfs " + opts.dir + ": " + strerror(errno));
    }
    double fs_size = static_cast<double>(vfs.f_blocks) * static_cast<double>(vfs.f_frsize);
    if (opts.max_fs_percent > 0) {
      store->quota_bytes_ = static_cast<uint64_t>(fs_size * std::min(opts.max_fs_percent, 100.0) / 100);
    }
    store->min_free_bytes_ = static_cast<uint64_t>(fs_size * std::min(opts.min_free_percent, 100.0) / 100);
  }
  store->ScanExisting();
  {
    std::lock_guard<std::mutex> l(store->mu_);
    store->overhead_bytes_ += opts.reserved_bytes + store->MeasureOtherLocked();
  }
  MODELFS_LOG(kInfo, "cache %s: quota %llu bytes (0 = none) for the whole directory, keeping %llu "
              "bytes of its filesystem free, %llu bytes cached, %llu bytes of index files, "
              "directories, metadata and reserve (log, status)", opts.dir.c_str(),
              (unsigned long long)store->quota_bytes_, (unsigned long long)store->min_free_bytes_,
              (unsigned long long)store->used_bytes_, (unsigned long long)store->overhead_bytes_);
  if (store->quota_bytes_ && store->overhead_bytes_ >= store->quota_bytes_) {
    MODELFS_LOG(kWarn, "cache quota %llu bytes leaves no room for blocks after %llu bytes of index "
                "files, metadata and reserve (the log's --log-max-size, status files): reads are "
                "served uncached", (unsigned long long)store->quota_bytes_,
                (unsigned long long)store->overhead_bytes_);
  }
  return store;
}

DiskBlobStore::DiskBlobStore(const CacheOptions& opts, RangeSource* source)
    : opts_(opts),
      source_(source),
      pool_(new ThreadPool(std::max(1u, opts.fetch_threads))),
      buffers_(std::make_shared<PageBufferPool>(kChunkSize, opts.max_inflight_chunks + opts.max_spill_chunks)),
      verify_pool_(new ThreadPool(1)),
      notify_pool_(new ThreadPool(1)),
      demand_pool_(new ThreadPool(std::max(1u, opts.fetch_threads))) {}

DiskBlobStore::~DiskBlobStore() {
  // Stop background work before members it touches go away.
  demand_pool_.reset();
  pool_.reset();
  verify_pool_.reset();
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
      usage_[ref.key].last_access = ++clock_;
      return it->second;
    }
    b = std::make_shared<Blob>();
    b->ref = ref;
    std::string dir = BlobDir(ref.key);
    // The quota covers the blob's own files: charged before they are created (the index is
    // written at once) unless they are on disk and charged already.
    Status s = ChargeNewFilesLocked(ref.key, ref.size, dir)
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
        overhead_bytes_ -= usage_[ref.key].files;
        usage_[ref.key].files = 0;
      }
      // (A new directory's page stays charged: the directory may exist now.)
    }
    blobs_[ref.key] = b;
    Usage& u = usage_[ref.key];
    u.last_access = ++clock_;
    uint64_t present = b->file ? Charge(b->file->PresentBytes()) : 0;
    used_bytes_ = used_bytes_ - u.bytes + present;  // the index may have been reset on open
    u.bytes = present;
    u.verified = b->file && b->file->verified();
  }
  MaybeScheduleVerify(b);  // complete but unverified (e.g. a crash before verification)
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

Status DiskBlobStore::ReadOrSpan(const BlobRef& ref, uint64_t offset, size_t len, char* buf, size_t* n,
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
  if (strict) {
    Status s = FillAndVerify(b);
    if (!s.ok() && (!after_failure || s.code() == Code::kCorruption)) return s;
    if (!s.ok()) strict = false;
  }
  if (!strict) {
    if (ReadHead(b, offset, end, buf)) {  // a header reader's first reads: no cursor, no block 0
      *n = end - offset;
      return Status::Ok();
    }
    demand_last = Prefetch(b, offset, end - offset);
  }
  // Every block of the read on disk and checked in this run: the kernel copies them from the
  // cache file itself. A strict reader only once the file verified. The end-of-file check comes
  // first (no hold while waiting for the hash: a failing hash must be able to drop the blocks).
  if (span != nullptr && b->file && (!strict || b->file->verified()) && TakeSpan(b, offset, end, /*hold=*/false, span)) {
    if (!strict && end == ref.size && ref.size > kChunkSize && !b->file->verified()) {
      Status s = WaitForHashAtEnd(b, failures0);
      if (!s.ok()) return s;
    }
    if (TakeSpan(b, offset, end, /*hold=*/true, span)) {
      *n = span->len;
      return Status::Ok();
    }
  }

  // A partial block is read whole (its XXH3 covers all of it) into a buffer from a pool: a fresh
  // zero-filled 1 MiB per read was the daemon's largest CPU cost on cold reads, and one kept per
  // thread cost 1 MiB of RSS per FUSE worker (64 by default). In use at once: at most one per
  // concurrent read, which the FUSE adapter bounds (MountOptions::reply_buffers).
  static PageBufferPool* const scratch_pool = new PageBufferPool(kBlockSize, kScratchKept);  // never freed
  struct Scratch {
    PageBuffer buf;
    ~Scratch() {
      if (buf) scratch_pool->Put(std::move(buf));
    }
  } scratch;
  std::shared_ptr<Inflight> last;  // the range fetched for an earlier block of this read
  bool waited = false;             // this read had to wait for the network
  int refetches = 0;               // blocks that vanished between a miss and their fetch
  for (uint64_t pos = offset; pos < end;) {
    uint32_t i = static_cast<uint32_t>(pos / kBlockSize);
    uint64_t bstart = static_cast<uint64_t>(i) * kBlockSize;
    uint64_t blen = std::min<uint64_t>(kBlockSize, ref.size - bstart);
    uint64_t take = std::min(blen - (pos - bstart), end - pos);
    char* out = buf + (pos - offset);
    if (!last || !last->Covers(i)) {
      last.reset();
      bool whole = pos == bstart && take == blen;
      char* target = out;
      if (!whole) {
        if (!scratch.buf) scratch.buf = scratch_pool->Get();
        target = scratch.buf.get();
      }
      if (b->file && b->file->ReadBlock(i, target)) {
        if (!whole) memcpy(out, scratch.buf.get() + (pos - bstart), take);
        hit_bytes_ += take;
        pos += take;
        continue;
      }
      if (b->file) NoteCorruption(b);
      if (strict) {
        if (++strict_rounds > 3) {
          return Status::IoError("blocks of " + ref.path + " keep vanishing after verification");
        }
        Status s = FillAndVerify(b);
        if (!s.ok()) return s;
        continue;  // read this block again, now verified
      }
      last = FetchBlock(b, i, demand_last);
      waited = true;
      if (!last) {  // stored meanwhile by another fetch: read it from disk
        if (++refetches > 8) return Status::IoError("blocks of " + ref.path + " keep vanishing");
        continue;
      }
      // Demand first: only this read's bytes are waited for; the rest of the range follows.
      if (!last->WaitFor(end)) {
        std::lock_guard<std::mutex> l(last->mu);
        if (!last->status.ok()) return last->status;
        return Status::Unavailable("fetch of " + ref.path + " ended short");
      }
    }
    memcpy(out, last->data.get() + (pos - last->begin), take);
    miss_bytes_ += take;
    pos += take;
  }
  if (waited) GrowWindow(b, end);
  // Fail closed at the end of a file: a reader that brought in all of it gets its last bytes only
  // once its hash matched (a one-chunk blob was hashed before any byte of it was served).
  if (!strict && end == ref.size && ref.size > kChunkSize && b->file && !b->file->verified()) {
    Status s = WaitForHashAtEnd(b, failures0);
    if (!s.ok()) return s;
  }
  *n = end - offset;
  return Status::Ok();
}

std::shared_ptr<DiskBlobStore::Inflight> DiskBlobStore::CoveringLocked(Blob& b, uint32_t block) {
  for (auto* m : {&b.inflight, &b.spill}) {
    auto it = m->upper_bound(block);
    if (it == m->begin()) continue;
    --it;
    if (it->second->Covers(block)) return it->second;
  }
  return nullptr;
}

std::shared_ptr<DiskBlobStore::Inflight> DiskBlobStore::NewSpanLocked(Blob& b, uint32_t lo, uint32_t hi,
                                                                      uint32_t max_blocks) {
  // The first block in [lo, hi] that is neither on disk nor being fetched, and the run of such
  // blocks after it, up to hi, max_blocks and the end of its chunk.
  const uint32_t nblocks = static_cast<uint32_t>((b.ref.size + kBlockSize - 1) / kBlockSize);
  hi = std::min(hi, nblocks - 1);
  auto missing = [&](uint32_t i) { return !(b.file && b.file->Present(i)) && !CoveringLocked(b, i); };
  uint32_t first = lo;
  while (first <= hi && !missing(first)) first++;
  if (first > hi) return nullptr;
  const uint32_t chunk_last = static_cast<uint32_t>((static_cast<uint64_t>(first) / kBlocksPerChunk + 1) * kBlocksPerChunk - 1);
  uint32_t last = first;
  uint32_t cap = std::min(hi, std::min(chunk_last, first + std::max(1u, max_blocks) - 1));
  // Block 0 while the head fetch has (or brings) its first kHeadBytes: a range of its own, which
  // takes the head's bytes and asks only for the rest (RunFetch); the blocks after it do not wait.
  if (first == 0 && b.head) cap = 0;
  while (last < cap && missing(last + 1)) last++;
  auto f = std::make_shared<Inflight>();
  f->first = first;
  f->last = last;
  f->begin = static_cast<uint64_t>(first) * kBlockSize;
  f->end = std::min<uint64_t>(b.ref.size, static_cast<uint64_t>(last + 1) * kBlockSize);
  b.inflight[first] = f;
  inflight_chunks_++;
  busy_++;
  return f;
}

void DiskBlobStore::Launch(const std::shared_ptr<Blob>& b, const std::shared_ptr<Inflight>& f, bool demand) {
  auto blob = b;
  auto fl = f;
  ThreadPool* pool = demand ? demand_pool_.get() : pool_.get();
  if (!pool->Submit([this, blob, fl] { RunFetch(blob, fl); })) {
    RunFetch(blob, fl);  // shutting down: complete it so no waiter hangs
  }
}

std::shared_ptr<DiskBlobStore::Inflight> DiskBlobStore::FetchBlock(const std::shared_ptr<Blob>& b, uint32_t i,
                                                                   uint32_t last) {
  std::shared_ptr<Inflight> f;
  {
    std::lock_guard<std::mutex> l(b->mu);
    f = CoveringLocked(*b, i);
    if (f) return f;  // being fetched (prefetch or another reader), or spilled: no second request
    // From this block to the end of its chunk (or `last`): the reader's bytes come first, and the
    // chunk's blocks before it are left to whoever needs them.
    f = NewSpanLocked(*b, i, last);
  }
  // Null: the block is on disk after all (stored since the caller's miss).
  if (f) Launch(b, f, /*demand=*/true);
  return f;
}

void DiskBlobStore::RunFetch(const std::shared_ptr<Blob>& b, const std::shared_ptr<Inflight>& f) {
  const BlobRef ref = b->ref;
  const uint64_t start = f->begin;
  const uint64_t len = f->end - f->begin;
  uint64_t generation;
  bool stream;
  {
    std::lock_guard<std::mutex> l(b->mu);
    generation = b->generation;
    // Bytes are handed over as they land, except where they must be checked first: a blob that
    // fits in one range is verified before any byte of it is returned; under verify before read
    // nothing unverified is returned; and after a hash failure an answer may be fetched again.
    stream = !(start == 0 && len == ref.size) && !opts_.verify_before_read && b->suspected.empty();
  }
  f->pool = buffers_;
  f->data = buffers_->Get();
  char* data = f->data.get();
  std::string served_by;
  Status st;
  bool whole_blob = start == 0 && len == ref.size;
  auto t0 = std::chrono::steady_clock::now();
  bool first_byte = false;
  RangeSource::Progress progress;
  // Block 0 after a head fetch: its first kHeadBytes are in memory already (or on the wire, sent
  // before this range), so only the rest is asked for. A failed head means the whole range.
  uint64_t reuse = 0;
  std::shared_ptr<Inflight> head;
  if (f->first == 0) {
    std::lock_guard<std::mutex> l(b->mu);
    head = b->head;
  }
  if (head && head->end < len && head->WaitFor(head->end)) {
    reuse = head->end;
    memcpy(data, head->data.get(), reuse);
    if (stream) f->Arrived(reuse);
  }
  if (stream) {
    progress = [&](size_t n) {
      if (!first_byte) {
        first_byte = true;
        NoteLatency(std::chrono::steady_clock::now() - t0);
      }
      f->Arrived(reuse + n);
    };
  }
  int distrusted = 0;  // answers refetched because their host is blamed for this blob
  bool untrusted_stream = false;
  for (int attempt = 0;; attempt++) {
    fetches_++;
    st = source_->ReadAtStreaming(ref, start + reuse, len - reuse, data + reuse, &served_by, progress);
    if (st.ok()) fetched_bytes_ += len - reuse;
    // A host blamed for a hash failure of this blob, while another that served it is blamed
    // less: ask again (the source now puts that host last) rather than serve what it sent. Bytes
    // already streamed to readers cannot be asked again: they are just not cached.
    if (st.ok() && Distrusted(b, served_by)) {
      if (stream) {
        untrusted_stream = true;
      } else if (distrusted < kDistrustedRefetches) {
        distrusted++;
        distrusted_refetches_++;
        reuse = 0;  // all of it again: the head came from the same mirrors
        continue;
      } else {
        // Still the blamed host, while a less blamed one serves this blob: what it sent is not
        // served (a whole-file reader could not be stopped at the end: these bytes would never
        // be cached, so never hashed). The reader gets an error and may try again.
        st = Status::Unavailable("only " + served_by + ", which served wrong bytes of " + ref.path +
                                 ", answered for [" + std::to_string(start) + ", +" + std::to_string(len) + ")");
        break;
      }
    }
    // Block 0 reuses the head's bytes: they must come from the host that sent the rest, or a
    // hash failure would blame the wrong one (after a failover the two can differ).
    if (st.ok() && reuse > 0) {
      std::string head_host;
      {
        std::lock_guard<std::mutex> l(head->mu);
        head_host = head->host;
      }
      if (head_host != served_by) {
        if (stream) {
          untrusted_stream = true;  // handed over already: served, not cached; the next fetch
          std::lock_guard<std::mutex> l(b->mu);  // of block 0 asks for all of it
          if (b->head == head) b->head.reset();
        } else {
          reuse = 0;
          continue;
        }
      }
    }
    if (!st.ok() || !whole_blob) break;
    if (HashHex(ref.hash_kind, data, len) == ref.hash) break;
    verify_failures_++;
    MODELFS_LOG(kError, "hash mismatch for %s %s (%s): bytes from %s are wrong; refetching",
                ref.repo.Id().c_str(), ref.path.c_str(), ref.key.c_str(), served_by.c_str());
    if (attempt >= kSmallBlobRetries) {
      st = Status::Corruption("content of " + ref.path + " does not match its hash");
      break;
    }
  }
  if (!first_byte && st.ok()) NoteLatency(std::chrono::steady_clock::now() - t0);
  if (!st.ok()) {
    // A failure is not remembered: out of the map before anyone can see it ended, so the next
    // read of these blocks asks again.
    std::lock_guard<std::mutex> l(b->mu);
    auto it = b->inflight.find(f->first);
    if (it != b->inflight.end() && it->second == f) b->inflight.erase(it);
  }
  // Hand the bytes to waiting readers first: they need not wait for the disk write. The entry
  // stays in the inflight map (done, data readable) until the blocks are on disk, so a reader that
  // arrives meanwhile copies from memory instead of missing on disk and fetching again.
  {
    std::lock_guard<std::mutex> l(f->mu);
    f->status = st;
    if (st.ok()) f->ready.store(len);
    f->done = true;
  }
  f->cv.notify_all();
  bool refused = false;
  if (st.ok()) {
    std::shared_lock<std::shared_mutex> drop(b->drop_mu);
    bool store;
    {
      std::lock_guard<std::mutex> l(b->mu);
      // With verify before read nothing unverified is served, so bytes from a host that failed
      // the hash once may be cached again: the hash judges them (with one mirror, a transient
      // corruption is then survived).
      // A host blamed more than another that serves this blob is not cached from (RunFetch
      // asked again above); when every host is blamed alike (one mirror), its answers are
      // cached and the hash judges them, so a whole-file reader is still stopped at the end.
      bool untrusted = untrusted_stream;
      // With verify before read, bytes of a host still blamed after the refetches above are not
      // cached while a less blamed host serves the blob (the fill asks again). If every host is
      // blamed alike, they get another try: the hash still judges.
      if (opts_.verify_before_read && DistrustedLocked(*b, served_by)) {
        untrusted = true;
        b->untrusted++;
      }
      store = generation == b->generation && !untrusted;
      b->hosts_seen.insert(served_by);
      if (store) {
        b->sources.insert(served_by);
        RecordHostLocked(*b, f->first, f->last, served_by);
      }
    }
    auto t1 = std::chrono::steady_clock::now();
    bool cached = store && StoreRange(b, f->first, data, len);
    if (!cached && !whole_blob) NoteServedUnstored(b, start, data, len);
    if (!store) uncached_bytes_ += len;
    if (store && !cached) Spill(b, f);
    refused = store && !cached;
    auto ms = [](auto d) { return std::chrono::duration<double, std::milli>(d).count(); };
    MODELFS_LOG(kDebug, "range %s blocks %u-%u: fetched in %.1f ms, stored in %.1f ms", ref.key.c_str(),
                f->first, f->last, ms(t1 - t0), ms(std::chrono::steady_clock::now() - t1));
  } else {
    MODELFS_LOG(kWarn, "fetch %s %s [%llu, +%llu) failed: %s", ref.repo.Id().c_str(),
                ref.path.c_str(), (unsigned long long)start, (unsigned long long)len,
                st.ToString().c_str());
  }
  {
    std::lock_guard<std::mutex> l(b->mu);
    auto it = b->inflight.find(f->first);
    if (it != b->inflight.end() && it->second == f) b->inflight.erase(it);
    b->progress++;
    if (!st.ok()) {
      b->fetch_failures++;
      b->last_failure = st;
    }
    b->refused += refused;
  }
  b->changed.notify_all();
  if (st.ok()) MaybeScheduleVerify(b);
  inflight_chunks_--;  // before ContinueFill: this range's slot is free for the next
  ContinueFill(b, st.ok() && !refused);
  busy_--;
}

void DiskBlobStore::Spill(const std::shared_ptr<Blob>& b, const std::shared_ptr<Inflight>& f) {
  std::lock_guard<std::mutex> sl(spill_mu_);
  {
    std::lock_guard<std::mutex> l(b->mu);
    if (!b->spill.emplace(f->first, f).second) return;
  }
  spill_fifo_.emplace_back(b, f->first);
  while (spill_fifo_.size() > std::max(1u, opts_.max_spill_chunks)) {
    auto [wb, oc] = spill_fifo_.front();
    spill_fifo_.pop_front();
    if (auto ob = wb.lock()) {
      std::lock_guard<std::mutex> l(ob->mu);
      ob->spill.erase(oc);
    }
  }
}

bool DiskBlobStore::StoreRange(const std::shared_ptr<Blob>& b, uint32_t first, const char* data,
                               uint64_t len) {
  if (!b->file) {
    uncached_bytes_ += len;
    return false;
  }
  // The writes of one file take turns, a range at a time, lowest first block first. The
  // filesystem serializes them anyway (a buffered write holds the inode's lock), but block by
  // block: 16 fetch threads then interleaved their ranges' blocks, a range took up to 240 ms to
  // store, and the one at the whole-file hash's frontier held the hash back until the end of the
  // read (a cold 524 MB read waited 0.2 s on its last bytes). In turns, the range the hash needs
  // next is stored first, and waiting writers sleep instead of spinning on the inode's lock.
  {
    std::unique_lock<std::mutex> l(b->mu);
    auto me = b->store_waiting.insert(first);
    b->changed.wait(l, [&] { return !b->storing && *b->store_waiting.begin() == first; });
    b->store_waiting.erase(me);
    b->storing = true;
  }
  struct Done {
    Blob* b;
    ~Done() {
      {
        std::lock_guard<std::mutex> l(b->mu);
        b->storing = false;
      }
      b->changed.notify_all();
    }
  } done{b.get()};
  bool all = true;
  uint64_t start = static_cast<uint64_t>(first) * kBlockSize;
  for (uint64_t off = 0; off < len; off += kBlockSize) {
    uint32_t i = static_cast<uint32_t>((start + off) / kBlockSize);
    uint32_t blen = b->file->BlockLen(i);
    if (b->file->Present(i)) continue;
    if (!Admit(b->ref.key, Charge(blen))) {
      uncached_bytes_ += blen;
      refused_bytes_ += blen;
      all = false;
      continue;
    }
    Status s = b->file->WriteBlock(i, data + off);
    {
      std::lock_guard<std::mutex> l(mu_);
      pending_bytes_ -= Charge(blen);  // written (or failed): statvfs now sees it
    }
    if (!s.ok()) {
      // ENOSPC from another process filling the disk, a read-only or vanished directory: the
      // reader still gets its bytes (they are in memory); only caching is skipped.
      MODELFS_LOG(kWarn, "cache write failed, serving uncached: %s", s.ToString().c_str());
      std::lock_guard<std::mutex> l(mu_);
      usage_[b->ref.key].bytes -= Charge(blen);
      used_bytes_ -= Charge(blen);
      uncached_bytes_ += blen;
      all = false;
    }
  }
  return all;
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
  s.evicted_bytes = evicted_bytes_;
  s.uncached_bytes = uncached_bytes_;
  std::lock_guard<std::mutex> l(mu_);
  s.used_bytes = used_bytes_;
  s.peak_used_bytes = peak_used_bytes_;
  s.overhead_bytes = overhead_bytes_;
  s.quota_bytes = quota_bytes_;
  s.refused_bytes = refused_bytes_;
  s.distrusted_refetches = distrusted_refetches_;
  s.hashed_bytes = hashed_bytes_;
  s.spliced_bytes = spliced_bytes_;
  uint64_t corrupt = 0;
  for (auto& [k, b] : blobs_)
    if (b->file) corrupt += b->file->corrupt_blocks();
  s.corrupt_blocks = corrupt;
  return s;
}

}  // namespace modelfs
