// DiskBlobStore, the fetches and the disk writes: single flight (a block already on the wire or in
// the spill is waited for, never asked again: CoveringLocked), the spans a miss or a prefetch
// launches (NewSpanLocked, on the demand or the fetch pool), RunFetch (one ranged read of the
// source into a pooled buffer, bytes handed to waiting readers as they land, retries of a small
// blob whose hash failed and of answers from a distrusted host, then the store), the in-memory
// spill for chunks the cache cannot take, and StoreRange (a file's writes in turns, each block
// admitted against the quota before it is written). The other rooms: disk_blob_store_internal.h.
#include "cache/disk_blob_store_internal.h"

#include <algorithm>
#include <chrono>
#include <cstring>
#include <mutex>
#include <shared_mutex>
#include <string>

#include "cache/hash.h"
#include "common/log.h"

namespace modelfs {
namespace {

// A fetched small blob whose hash mismatches is fetched again this many times before EIO.
constexpr int kSmallBlobRetries = 2;
// An answer from a host blamed for this blob's hash failure is fetched again up to this many times
// (the source tries that host last) before it is used.
constexpr int kDistrustedRefetches = 2;

}  // namespace

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
  inflight_blocks_ += f->buffer_blocks();
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
    // Stored since the caller's miss (and out of the inflight map): the caller reads it from disk.
    // NewSpanLocked would start at the next missing block instead, a range without block i.
    if (b->file && b->file->Present(i)) return nullptr;
    // From this block to the end of its chunk (or `last`): the reader's bytes come first, and the
    // chunk's blocks before it are left to whoever needs them.
    f = NewSpanLocked(*b, i, last);
  }
  // Null: the block is on disk after all (stored since the caller's miss).
  if (f) Launch(b, f, /*demand=*/true);
  return f;
}

void DiskBlobStore::RunFetch(const std::shared_ptr<Blob>& b, const std::shared_ptr<Inflight>& f) {
  uint64_t generation;
  bool stream;
  {
    std::lock_guard<std::mutex> l(b->mu);
    generation = b->generation;
    // Bytes are handed over as they land, except where they must be checked first: a blob that
    // fits in one range is verified before any byte of it is returned; under verify before read
    // nothing unverified is returned; and after a hash failure an answer may be fetched again.
    stream = !(f->begin == 0 && f->end == b->ref.size) && !opts_.verify_before_read && !b->prov.AnyBlamed();
  }
  f->pool = f->first == f->last ? block_buffers_ : buffers_;
  f->data = f->pool->Get();
  const auto t0 = std::chrono::steady_clock::now();
  const Fetched got = FetchRange(b, f, stream, t0);
  if (!got.status.ok()) {
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
    f->status = got.status;
    if (got.status.ok()) f->ready.store(f->end - f->begin);
    f->done = true;
  }
  f->cv.notify_all();
  bool refused = false;
  if (got.status.ok()) {
    refused = KeepFetched(b, f, generation, got, t0);
  } else {
    MODELFS_LOG(kWarn, "fetch %s %s [%llu, +%llu) failed: %s", b->ref.repo.Id().c_str(), b->ref.path.c_str(),
                (unsigned long long)f->begin, (unsigned long long)(f->end - f->begin),
                got.status.ToString().c_str());
  }
  EndFetch(b, f, got.status, refused);
}

DiskBlobStore::Fetched DiskBlobStore::FetchRange(const std::shared_ptr<Blob>& b, const std::shared_ptr<Inflight>& f,
                                                 bool stream, std::chrono::steady_clock::time_point t0) {
  const BlobRef& ref = b->ref;
  const uint64_t start = f->begin;
  const uint64_t len = f->end - f->begin;
  const bool whole_blob = start == 0 && len == ref.size;
  char* data = f->data.get();
  Fetched got;
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
  Status& st = got.status;
  for (int attempt = 0;; attempt++) {
    fetches_++;
    st = source_->ReadAtStreaming(ref, start + reuse, len - reuse, data + reuse, &got.served_by, progress);
    if (st.ok()) fetched_bytes_ += len - reuse;
    // A host blamed for a hash failure of this blob, while another that served it is blamed
    // less: ask again (the source now puts that host last) rather than serve what it sent. Bytes
    // already streamed to readers cannot be asked again: they are just not cached.
    if (st.ok() && Distrusted(b, got.served_by)) {
      if (stream) {
        got.untrusted = true;
      } else if (distrusted < kDistrustedRefetches) {
        distrusted++;
        distrusted_refetches_++;
        reuse = 0;  // all of it again: the head came from the same mirrors
        continue;
      } else {
        // Still the blamed host, while a less blamed one serves this blob: what it sent is not
        // served (a whole-file reader could not be stopped at the end: these bytes would never
        // be cached, so never hashed). The reader gets an error and may try again.
        st = Status::Unavailable("only " + got.served_by + ", which served wrong bytes of " + ref.path +
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
      if (head_host != got.served_by) {
        if (stream) {
          got.untrusted = true;  // handed over already: served, not cached; the next fetch
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
                ref.repo.Id().c_str(), ref.path.c_str(), ref.key.c_str(), got.served_by.c_str());
    if (attempt >= kSmallBlobRetries) {
      st = Status::Corruption("content of " + ref.path + " does not match its hash");
      break;
    }
  }
  if (!first_byte && st.ok()) NoteLatency(std::chrono::steady_clock::now() - t0);
  return got;
}

bool DiskBlobStore::KeepFetched(const std::shared_ptr<Blob>& b, const std::shared_ptr<Inflight>& f,
                                uint64_t generation, const Fetched& got, std::chrono::steady_clock::time_point t0) {
  const uint64_t start = f->begin;
  const uint64_t len = f->end - f->begin;
  const char* data = f->data.get();
  std::shared_lock<std::shared_mutex> drop(b->drop_mu);
  bool store;
  {
    std::lock_guard<std::mutex> l(b->mu);
    // A host blamed more than another that serves this blob is not cached from (FetchRange
    // asked again); when every host is blamed alike (one mirror), its answers are cached and the
    // hash judges them, so a whole-file reader is still stopped at the end.
    bool untrusted = got.untrusted;
    // With verify before read nothing unverified is served, so bytes from a host that failed the
    // hash once may be cached again (with one mirror, a transient corruption is then survived);
    // but bytes of a host still blamed after the refetches are not cached while a less blamed
    // host serves the blob (the fill asks again). If every host is blamed alike, they get another
    // try: the hash still judges.
    if (opts_.verify_before_read && b->prov.Distrusted(got.served_by)) {
      untrusted = true;
      b->untrusted++;
    }
    store = generation == b->generation && !untrusted;
    b->prov.Saw(got.served_by);
    if (store) b->prov.Stored(f->first, f->last, got.served_by);
  }
  const auto t1 = std::chrono::steady_clock::now();
  const bool cached = store && StoreRange(b, f->first, data, len);
  if (!cached && !(start == 0 && len == b->ref.size)) NoteServedUnstored(b, start, data, len);
  if (!store) uncached_bytes_ += len;
  if (store && !cached) Spill(b, f);
  auto ms = [](auto d) { return std::chrono::duration<double, std::milli>(d).count(); };
  MODELFS_LOG(kDebug, "range %s blocks %u-%u: fetched in %.1f ms, stored in %.1f ms", b->ref.key.c_str(), f->first,
              f->last, ms(t1 - t0), ms(std::chrono::steady_clock::now() - t1));
  return store && !cached;
}

void DiskBlobStore::EndFetch(const std::shared_ptr<Blob>& b, const std::shared_ptr<Inflight>& f, const Status& st,
                             bool refused) {
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
  if (st.ok()) verifier_->Schedule(b);
  inflight_blocks_ -= f->buffer_blocks();  // before ContinueFill: this range's room is free for the next
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
    if (!space_->Admit(b->ref.key, Charge(blen))) {
      uncached_bytes_ += blen;
      refused_bytes_ += blen;
      all = false;
      continue;
    }
    Status s = b->file->WriteBlock(i, data + off);
    space_->Commit(b->ref.key, Charge(blen), s.ok());
    if (!s.ok()) {
      // ENOSPC from another process filling the disk, a read-only or vanished directory: the
      // reader still gets its bytes (they are in memory); only caching is skipped.
      MODELFS_LOG(kWarn, "cache write failed, serving uncached: %s", s.ToString().c_str());
      uncached_bytes_ += blen;
      all = false;
    }
  }
  return all;
}

}  // namespace modelfs
