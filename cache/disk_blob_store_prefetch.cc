// DiskBlobStore, prefetch: what is fetched before a reader asks for it. The open's head (the first
// kHeadBytes, in memory), the safetensors layout learnt from it, each read's stream and what it
// calls for (decided by the blob's StreamTracker, cache/stream_tracker.h; scheduled here within the
// in-flight budget), the lookahead into the next shard, and background fills of a whole file
// (fill_on_open, or a reader in its own tensor order).
#include "cache/disk_blob_store_internal.h"

#include <algorithm>
#include <cstring>

#include "cache/safetensors.h"
#include "common/log.h"

namespace modelfs {
namespace {

// A reader of a safetensors file that goes back this many times, to bytes neither on disk nor on
// the wire further before the furthest read than the kernel reorders a stream, reads the file in
// an order of its own (mmap in a framework's module order, a random order): it is taken to read
// all of the file, which is then filled in the background (ScheduleFill) instead of being
// discovered tensor by tensor, each at a round trip's cost. A reader of a few tensors in file
// order (the header and one tensor, a pipeline stage's layers) never goes back, so never
// triggers it; one that reads two tensors, the second before the first, pays for the file. Only
// with one handle open: several readers of one file (ranks reading a part each) start and jump
// below one another without being readers in their own order.
constexpr uint32_t kScatterBackJumps = 1;

// The first window of a model's first shard that a read of the model's index starts (HintLoad):
// 16 chunks, so 16 connections leave slow start together, and no more is fetched on the strength
// of an index read alone (a `cat` of it costs at most this). The reader's own stream takes over.
constexpr uint64_t kIndexHintWindow = 16 * kChunkSize;

}  // namespace

void DiskBlobStore::HintLoad(const BlobRef& ref) {
  if (opts_.verify_before_read) return;
  auto b = GetBlob(ref);
  if (!b->file || b->file->verified() || b->file->AllPresent()) return;
  {
    std::lock_guard<std::mutex> l(b->mu);
    if (b->load_expected) return;
    b->load_expected = true;
  }
  MODELFS_LOG(kDebug, "%s: a loader read the model's index: fetching its head", ref.path.c_str());
  FetchHead(b, ref);
  // The loader reads this file next, from its head on: its first window starts now, over as many
  // connections as it has chunks, while the loader still reads the index and the header. On a far
  // link those fresh connections spend their first round trips in slow start; begun here, that
  // is behind the index and the header instead of in front of the first tensor (a 237 MiB
  // four-shard load at 200 ms RTT: +3% for loaders in file order, bench/RESULTS-far.md).
  SeedWindow(b, std::min(StartWindow(), kIndexHintWindow), "the model's index");
}

void DiskBlobStore::FetchHead(const std::shared_ptr<Blob>& b, const BlobRef& ref) {
  // An open is followed by a read of the head (a safetensors header, a config's first bytes):
  // start it now, so that the first read finds its bytes on the wire. kHeadBytes and not a block
  // or a chunk: a loader that reads the header and one tensor must not pay for more.
  if (opts_.verify_before_read || !b->file || b->file->verified()) return;
  std::shared_ptr<Inflight> head;
  {
    std::lock_guard<std::mutex> l(b->mu);
    // Not after a hash failure: every answer may then have to be judged before it is served.
    if (ref.size > kBlockSize && !b->head && !b->prov.AnyBlamed() && !b->file->Present(0) &&
        !CoveringLocked(*b, 0)) {
      head = std::make_shared<Inflight>();
      head->end = kHeadBytes;
      head->data = NewPageBuffer(kHeadBytes);
      b->head = head;
      busy_++;
    }
  }
  if (head) {
    auto blob = b;
    if (!demand_pool_->Submit([this, blob, head] { RunHeadFetch(blob, head); })) RunHeadFetch(blob, head);
  } else if (!b->file->AllPresent()) {
    source_->Prepare(ref);
  }
}

void DiskBlobStore::RunHeadFetch(const std::shared_ptr<Blob>& b, const std::shared_ptr<Inflight>& f) {
  std::string served_by;
  fetches_++;
  Status st = source_->ReadAtStreaming(b->ref, 0, f->end, f->data.get(), &served_by,
                                       [&f](size_t n) { f->Arrived(n); });
  if (st.ok()) fetched_bytes_ += f->end;
  {
    std::lock_guard<std::mutex> l(f->mu);
    f->status = st;
    f->host = served_by;
    if (st.ok()) f->ready.store(f->end);
    f->done = true;
  }
  f->cv.notify_all();
  if (st.ok()) NoteServedUnstored(b, 0, f->data.get(), f->end);
  {
    std::lock_guard<std::mutex> l(b->mu);
    if (st.ok()) {
      b->prov.Saw(served_by);
    } else if (b->head == f) {
      b->head.reset();  // the next read fetches block 0
    }
  }
  busy_--;
}

bool DiskBlobStore::ReadHead(const std::shared_ptr<Blob>& b, uint64_t offset, uint64_t end, ReadDest& dest) {
  std::shared_ptr<Inflight> head;
  {
    std::lock_guard<std::mutex> l(b->mu);
    head = b->head;
  }
  if (!head || end > head->end || !head->WaitFor(end)) return false;
  memcpy(dest.get(), head->data.get() + offset, end - offset);
  miss_bytes_ += end - offset;
  return true;
}

void DiskBlobStore::PrepareBlob(const BlobRef& ref) {
  // A lookup (stat, ls -l) of a large file: a read may follow, so let the source resolve where to
  // read it from now. No blob files are opened for this; cached files cost nothing.
  if (opts_.verify_before_read || ref.size <= kBlockSize) return;
  if (space_->IsVerified(ref.key)) return;
  source_->Prepare(ref);
}

void DiskBlobStore::HintNext(const BlobRef& ref, const BlobRef& next) {
  if (opts_.verify_before_read || next.key == ref.key) return;
  auto b = GetBlob(ref);
  std::lock_guard<std::mutex> l(b->mu);
  if (!b->next || b->next->key != next.key) b->next = std::make_unique<BlobRef>(next);
}

void DiskBlobStore::Lookahead(const std::shared_ptr<Blob>& from, uint64_t window, int depth) {
  BlobRef ref;
  {
    std::lock_guard<std::mutex> l(from->mu);
    if (!from->next) return;
    ref = *from->next;
  }
  if (ref.size <= kBlockSize) return;  // a file of one block is fetched whole by its first read
  auto n = GetBlob(ref);
  const uint64_t rest = SeedWindow(n, window, from->ref.path.c_str());
  if (rest > kChunkSize && depth > 1) Lookahead(n, rest, depth - 1);
}

uint64_t DiskBlobStore::SeedWindow(const std::shared_ptr<Blob>& n, uint64_t window, const char* after) {
  const BlobRef& ref = n->ref;
  if (space_->quota() > 0) {
    // Only into free room, half of it at most: a lookahead must never evict what the reader of
    // this file (or anyone) still needs, or a full cache refetches.
    window = std::min(window, space_->FreeRoom() / 2);
  }
  if (window < kChunkSize) return 0;
  if (!n->file || n->file->verified() || n->file->AllPresent()) return 0;
  std::vector<std::shared_ptr<Inflight>> todo;
  uint64_t rest = 0;  // of the window, once all of this file is scheduled
  {
    std::lock_guard<std::mutex> l(n->mu);
    if (n->opens > 0) return 0;  // its reader is there: its own stream drives it
    bool created = false;
    StreamTracker::Stream* cur = n->streams.Seed(window, &created);
    if (created) {
      MODELFS_LOG(kDebug, "lookahead: %s after %s, %llu bytes", ref.path.c_str(), after,
                  (unsigned long long)window);
    }
    if (cur == nullptr) return 0;  // a reader came and went: not a lookahead stream any more
    cur->window = std::max(cur->window, window);
    const uint64_t to = n->streams.WindowEnd(0, cur->window, ref.size);
    cur->prefetched_to = std::max(cur->prefetched_to, ScheduleLocked(*n, cur->prefetched_to, to, &todo));
    if (cur->prefetched_to >= ref.size && window > ref.size) rest = window - ref.size;
  }
  for (auto& f : todo) Launch(n, f, /*demand=*/false);
  return rest;
}

void DiskBlobStore::NoteLatency(std::chrono::steady_clock::duration d) {
  // Time to a range's first byte, as a moving average (alpha 1/4), in microseconds.
  const uint64_t us = static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::microseconds>(d).count());
  uint64_t old = latency_us_.load();
  uint64_t next = old == 0 ? us : (3 * old + us) / 4;
  latency_us_.compare_exchange_strong(old, next);  // a lost race loses one sample
}

uint64_t PrefetchStartWindow(uint64_t latency_us, uint64_t initial, uint64_t max) {
  max = std::max(max, initial);
  uint64_t w = initial;
  for (uint64_t t = 10000; t <= latency_us && w < max; t *= 2) w *= 2;
  return std::min(w, max);
}

uint64_t DiskBlobStore::StartWindow() const {
  // Until a range of our own has measured it, the source's latency (its API calls) stands in.
  uint64_t lat = latency_us_.load();
  if (lat == 0) lat = source_->LatencyHintUs();
  return PrefetchStartWindow(lat, opts_.initial_window, opts_.max_window);
}

void DiskBlobStore::MaybeLoadLayout(const std::shared_ptr<Blob>& b) {
  const BlobRef& ref = b->ref;
  std::shared_ptr<Inflight> head;  // the head fetch, or chunk 0 fetched but maybe not on disk yet
  {
    std::lock_guard<std::mutex> l(b->mu);
    if (b->layout_known) return;
    const std::string ext = ".safetensors";
    bool named = ref.path.size() > ext.size() && ref.path.compare(ref.path.size() - ext.size(), ext.size(), ext) == 0;
    if (!b->file || ref.size <= kBlockSize || !named) {
      b->layout_known = true;  // nothing to learn
      return;
    }
    head = b->head;
    if (!head || head->ready.load() < 8) head = CoveringLocked(*b, 0);
  }
  // The head may still be on the wire: what has landed of it is enough once it holds the header.
  const uint64_t landed = head ? head->ready.load() : 0;
  std::unique_ptr<char[]> block;
  const char* first = nullptr;  // the file's first bytes: the head in memory, or block 0 from disk
  uint64_t first_len = 0;
  if (landed >= 8) {
    first = head->data.get();
    first_len = landed;
  } else {
    // The reader that fetched chunk 0 got its bytes before the disk write: learnt on a later read.
    block.reset(new char[kBlockSize]);
    if (!b->file->Present(0) || !b->file->ReadBlock(0, block.get())) return;
    first = block.get();
    first_len = b->file->BlockLen(0);
  }
  std::vector<uint64_t> regions;
  auto n = SafetensorsHeaderLength(first, ref.size);
  if (n.ok()) {
    const uint64_t end = 8 + n.value();
    std::string header;
    if (end <= first_len) {
      header.assign(first + 8, n.value());
    } else {  // a header larger than what is in hand: from the blocks on disk, if they are there
      if (!block) block.reset(new char[kBlockSize]);
      for (uint32_t i = 0; static_cast<uint64_t>(i) * kBlockSize < end; i++) {
        if (!b->file->ReadBlock(i, block.get())) return;  // not cached yet: later
        const uint64_t bstart = static_cast<uint64_t>(i) * kBlockSize;
        const uint64_t from = std::max<uint64_t>(bstart, 8);
        const uint64_t to = std::min<uint64_t>(bstart + b->file->BlockLen(i), end);
        if (to > from) header.append(block.get() + (from - bstart), to - from);
      }
    }
    auto r = SafetensorsRegionEnds(header, n.value(), ref.size);
    if (r.ok()) regions = std::move(r).value();
  }
  std::lock_guard<std::mutex> l(b->mu);
  b->streams.set_regions(std::move(regions));
  b->layout_known = true;
}

uint64_t DiskBlobStore::ScheduleLocked(Blob& b, uint64_t from, uint64_t to,
                                       std::vector<std::shared_ptr<Inflight>>* todo, uint32_t span_blocks,
                                       uint32_t max_inflight) {
  if (from >= to) return to;
  if (max_inflight == 0) max_inflight = opts_.max_inflight_chunks;
  uint32_t lo = static_cast<uint32_t>(from / kBlockSize);
  const uint32_t hi = static_cast<uint32_t>((to - 1) / kBlockSize);
  while (lo <= hi) {
    if (inflight_blocks_ >= max_inflight * kBlocksPerChunk) {
      return static_cast<uint64_t>(lo) * kBlockSize;  // budget: resume on a later read
    }
    auto f = NewSpanLocked(b, lo, hi, span_blocks);
    if (!f) break;
    todo->push_back(f);
    lo = f->last + 1;
  }
  return to;
}

uint32_t DiskBlobStore::Prefetch(const std::shared_ptr<Blob>& b, uint64_t off, uint64_t len) {
  std::vector<std::shared_ptr<Inflight>> todo;
  bool demand = false;
  uint32_t demand_last = UINT32_MAX;
  uint64_t lookahead = 0;  // > 0: start the next file with this window
  bool fill = false;       // start a background fill of the file
  std::vector<std::shared_ptr<Inflight>> ahead;  // prefetch behind the demand ranges in todo
  MaybeLoadLayout(b);
  {
    std::lock_guard<std::mutex> l(b->mu);
    static std::atomic<uint64_t> tick{0};
    uint64_t now = ++tick;
    StreamTracker& streams = b->streams;
    const std::vector<uint64_t>& regions = streams.regions();
    StreamTracker::Stream* cur = streams.Find(off);
    // A read that lands inside a tensor, not right after where its stream was, is a loader
    // starting that tensor (a random-order or lazy loader, a loader skipping to the tensor it
    // wants): the header gives the tensor's extent, so all of it (up to max_window) is requested
    // at once, over as many connections as it has ranges, instead of being discovered read by
    // read. "Right after" is within a block: kernel readahead and FUSE threads reorder a little.
    const StreamTracker::Place place = streams.PlaceOf(off, len);
    // A jump is a read past where the stream was and past what it has scheduled: kernel
    // readahead and FUSE threads deliver a sequential stream a little out of order, but inside
    // its prefetch window.
    const bool jumped = streams.Jumped(cur, off);
    // A reader in its own tensor order will read all of this file: the rest of it streams in the
    // background, in file order, over the fetch pool. Such is a loader of the whole model
    // (HintLoad) whose first read here is past the first tensor, and a lone reader that jumps back
    // into a hole further than a stream is reordered (kScatterBackJumps; a stream's own reads
    // that miss are not going back). The stream the index's hint seeded at offset 0, which the
    // header read continues, is no tensor read.
    bool own_order = false;
    if (b->load_expected && (!cur || !b->read_a_tensor) && place.in_tensor && !place.first_tensor) {
      own_order = true;
    } else if (jumped && b->opens <= 1 && !regions.empty() && off + streams.Reorder() < b->read_end && b->file) {
      const uint32_t block = static_cast<uint32_t>(off / kBlockSize);
      if (!b->file->Present(block) && !CoveringLocked(*b, block)) own_order = ++b->back_jumps >= kScatterBackJumps;
    }
    if (own_order) b->own_order = true;
    if (own_order && !b->filling && b->file && !b->file->AllPresent()) {
      b->filling = fill = true;
      b->fill_shared = true;
      MODELFS_LOG(kDebug, "%s: read at %llu (%u times back from %llu%s): a reader in its own tensor order, "
                  "filling the rest of the file", b->ref.path.c_str(), (unsigned long long)off, b->back_jumps,
                  (unsigned long long)b->read_end, b->load_expected ? ", after the model's index" : "");
    }
    b->read_end = std::max(b->read_end, off + len);
    if (place.in_tensor) b->read_a_tensor = true;
    const bool cursor_was_new = !cur;
    if (!cur) {
      cur = streams.Start(off, len, StartWindow(), now);
      if (!place.in_tensor) return demand_last;  // a lone read is not a stream yet: fetch only what it needs
    }
    if (place.in_tensor && jumped) {
      streams.EnterRegion(*cur, off, len, place, now);
      const uint64_t to = streams.TensorRangeEnd(off, place);
      // Over as many connections as the demand pool has, in ranges of whole blocks: a far link's
      // fresh connections are in slow start, where a range's time grows with its size (200 ms
      // RTT: 1 MiB 1.0 s, 4 MiB 1.5 s), so the tensor comes fastest in the smallest pieces.
      const uint64_t blocks = (to - off / kBlockSize * kBlockSize + kBlockSize - 1) / kBlockSize;
      const uint64_t threads = std::max(1u, opts_.fetch_threads);
      const uint32_t span = static_cast<uint32_t>(std::min<uint64_t>(kBlocksPerChunk, (blocks + threads - 1) / threads));
      MODELFS_LOG(kDebug, "%s: read at %llu+%llu starts a tensor: [%llu, %llu) in ranges of %u blocks (%s)",
                  b->ref.path.c_str(), (unsigned long long)off, (unsigned long long)len, (unsigned long long)off,
                  (unsigned long long)to, span, cursor_was_new ? "new stream" : "jump");
      cur->prefetched_to = ScheduleLocked(*b, off, to, &todo, span);
      demand = true;  // the reader is about to wait for these
      // A new stream that starts at the first tensor (its header came with the open) is a loader
      // in file order, which reads on into the next tensors: it is a whole-file stream at once,
      // not capped at this tensor, so the link is busy with what follows while the first tensor
      // comes (a reader of the first tensor alone pays for a window; a lazy reader's tensor is
      // rarely the first).
      if (cursor_was_new && place.first_tensor && cur->prefetched_to >= to) {
        cur->whole = true;
        const uint64_t ahead_to = streams.WindowEnd(off + len, cur->window, b->ref.size);
        cur->prefetched_to = ScheduleLocked(*b, to, ahead_to, &ahead);
        if (b->next && cur->prefetched_to >= b->ref.size) lookahead = StartWindow();
      }

      // A loader in its own tensor order (mmap, random) that has half the file already reads all
      // of it: the next file (HintNext) starts now, as for a whole-file stream below.
      if (b->next && b->file && b->file->PresentBytes() >= b->ref.size / 2) lookahead = StartWindow();
    } else {
      // The latency may have been measured since the stream began (its first fetch gave it).
      streams.Continue(*cur, off, len, StartWindow(), now);
      const StreamTracker::Range r = streams.SequentialRange(*cur, off, len, b->ref.size);
      cur->prefetched_to = std::max(cur->prefetched_to, ScheduleLocked(*b, r.from, r.to, &todo));
      // Past the end of the tensor the stream is capped at: the kernel's readahead, which needs
      // this read's blocks but nothing after them.
      if (off >= streams.RegionCap(*cur)) demand_last = static_cast<uint32_t>((off + len - 1) / kBlockSize);
      // A stream from the file's head (its first chunk or its first tensor) that has scheduled it
      // to its end: a whole-file reader, so the next file (HintNext) starts now and its
      // connections leave slow start meanwhile. As much of it as the link's latency calls for
      // (StartWindow): all of max_window on a far link, two chunks on a near one, where a reader
      // of one shard should not pay for the next.
      const uint64_t head_end = std::max<uint64_t>(kChunkSize, regions.size() > 1 ? regions[1] : 0);
      if (b->next && cur->start < head_end && cur->prefetched_to >= b->ref.size) lookahead = StartWindow();
    }
  }
  for (auto& f : todo) Launch(b, f, demand);
  for (auto& f : ahead) Launch(b, f, /*demand=*/false);
  if (fill) ScheduleFill(b, SharedFillBudget());
  if (lookahead > 0) Lookahead(b, lookahead);
  return demand_last;
}

void DiskBlobStore::GrowWindow(const std::shared_ptr<Blob>& b, uint64_t end) {
  // The reader of a stream caught up with its prefetch and waited: its window grows.
  std::lock_guard<std::mutex> l(b->mu);
  b->streams.Grow(end);
}

void DiskBlobStore::ContinueFill(const std::shared_ptr<Blob>& b, bool last_ok) {
  // A background fill (fill_on_open, or for a reader in its own order) schedules more chunks as
  // each ends, so it streams over the fetch pool; it stops when the blob is complete, or at the
  // first failure or refusal (readers then fetch what they need as usual).
  bool shared;
  {
    std::lock_guard<std::mutex> l(b->mu);
    if (!b->filling) return;
    if (!last_ok || !b->file || b->file->AllPresent()) {
      b->filling = false;
      return;
    }
    shared = b->fill_shared;
  }
  ScheduleFill(b, shared ? SharedFillBudget() : 0);
}

void DiskBlobStore::ScheduleFill(const std::shared_ptr<Blob>& b, uint32_t max_inflight) {
  // Every missing range not in flight, in file order, as far as the global budget allows; the
  // waiting reader calls this again as fetches end, so the file streams over all fetch threads.
  // Spilled ranges are fetched again: only blocks on disk can be verified.
  std::vector<std::shared_ptr<Inflight>> todo;
  {
    std::lock_guard<std::mutex> l(b->mu);
    if (!b->file) return;
    b->spill.clear();
    ScheduleLocked(*b, 0, b->ref.size, &todo, kBlocksPerChunk, max_inflight);
  }
  for (auto& f : todo) Launch(b, f, /*demand=*/false);
}

}  // namespace modelfs
