// StreamTracker: the read streams of one file, and what they call for, as a value type: no locks,
// no I/O, no clock. Reads go in (Find, Start, Continue, EnterRegion); offsets to schedule come out
// (SequentialRange, TensorRangeEnd, RegionCap), and the caller (DiskBlobStore::Prefetch) turns them
// into fetches within its in-flight budget and writes back how far it got (Stream::prefetched_to).
//
// A stream is a cursor over one file: several processes, tensor-parallel ranks and the kernel's
// readahead read one file at once, so up to kMaxStreams are kept, the least recently used
// replaced. A read within [-Reorder(), +kSeekForwardTolerance] of a stream's position continues
// it; one that lands past where the stream was and past what it has scheduled is a jump. Each
// stream's prefetch window starts where the caller says (the link's latency) and doubles when its
// reader had to wait for the network (Grow), up to max_window.
//
// In a .safetensors file whose header is known (set_regions: the end offsets of the header and of
// each tensor, cache/safetensors.h), a stream that began inside one region prefetches no further
// than that region's end (RegionCap) until its reads cross it by more than the kernel's readahead
// (RegionSlack): a loader reading one tensor fetches that tensor, not a growing window past it.
//
// Not thread-safe: the owner serializes every call (DiskBlobStore holds the blob's mu).
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

namespace modelfs {

class StreamTracker {
 public:
  // A read within this distance of a stream's position continues the stream (mountpoint-s3 and
  // hf-mount both tolerate 1 MiB back and 16 MiB forward). Kernel readahead and several FUSE
  // threads deliver one sequential stream slightly out of order, so strict equality would
  // misclassify it as random.
  static constexpr uint64_t kSeekBackTolerance = 1ull << 20;
  static constexpr uint64_t kSeekForwardTolerance = 16ull << 20;
  // A stream that began in a safetensors header and reads this far past its end (at least; see
  // RegionSlack) is a sequential reader of the file.
  static constexpr uint64_t kHeaderSlack = 1ull << 20;
  // The kernel's page: reads through the page cache begin on a page boundary.
  static constexpr uint64_t kPageSize = 4096;
  // Streams tracked per file: enough for tensor-parallel ranks (4-8) reading one shard.
  static constexpr size_t kMaxStreams = 8;

  struct Limits {
    uint64_t block_size = 0;        // the cache's block (bytes): a jump is more than one past
    uint64_t chunk_size = 0;        // the fetch unit (bytes): sequential prefetch ends on one
    uint64_t initial_window = 0;    // bytes; CacheOptions::initial_window
    uint64_t max_window = 0;        // bytes; CacheOptions::max_window
    uint64_t kernel_readahead = 0;  // bytes; CacheOptions::kernel_readahead
  };

  struct Stream {
    uint64_t next = 0;           // offset just past this stream's last read
    uint64_t window = 0;         // prefetch window, bytes
    uint64_t prefetched_to = 0;  // chunks below this offset have been scheduled (the caller's)
    uint64_t hits = 0;           // sequential reads seen
    uint64_t last_use = 0;       // the caller's tick at its last read (for replacement)
    uint64_t start = 0;          // where the stream began (for the safetensors region cap)
    bool whole = false;          // a loader in file order from the first tensor: never capped
  };

  // Where a read falls among the safetensors regions.
  struct Place {
    bool in_tensor = false;     // it starts a region after the header (a tensor), or lies in one
    bool first_tensor = false;  // ... and that region is the first tensor
    uint64_t region_begin = 0;  // that region's [begin, end), when in_tensor
    uint64_t region_end = 0;
  };

  StreamTracker() = default;
  explicit StreamTracker(const Limits& limits) : limits_(limits) {}

  // The safetensors layout: ascending region end offsets (the header's first), empty if unknown.
  void set_regions(std::vector<uint64_t> ends) { regions_ = std::move(ends); }
  const std::vector<uint64_t>& regions() const { return regions_; }

  // How far behind its stream a read still belongs to it: two kernel readahead windows (the
  // kernel sends a window's requests at once and the FUSE threads deliver them in any order).
  uint64_t Reorder() const;
  // The stream a read at `off` continues, or null.
  Stream* Find(uint64_t off);
  // Where the read [off, off + len) falls. The kernel reads whole pages and tensors are not
  // page-aligned: a read that begins in the last page before a region's end and runs past it is
  // a read of the next region.
  Place PlaceOf(uint64_t off, uint64_t len) const;
  // Whether a read at `off` is a jump for stream `s` (null: no stream, always a jump): past where
  // it was by more than a block and past what it has scheduled. The kernel's readahead past the
  // end of the tensor the stream is capped at is not one.
  bool Jumped(const Stream* s, uint64_t off) const;
  // A new stream for the read [off, off + len) with this window, replacing the least recently
  // used one when kMaxStreams are kept. The pointer is valid until the next Start or Seed.
  Stream* Start(uint64_t off, uint64_t len, uint64_t window, uint64_t now);
  // The read [off, off + len) jumped into the region `place` names: the stream moves there and
  // counts as new (hits 0), capped at that region from now on.
  void EnterRegion(Stream& s, uint64_t off, uint64_t len, const Place& place, uint64_t now) const;
  // The read [off, off + len) continues `s`: one more hit, a window of at least `min_window`.
  void Continue(Stream& s, uint64_t off, uint64_t len, uint64_t min_window, uint64_t now) const;
  // What a stream's sequential prefetch should have scheduled after the read [off, off + len):
  // [from, to), from this read's first block (or what is scheduled already) to whole chunks past
  // the window, no further than the file's end or the stream's region cap.
  struct Range {
    uint64_t from = 0, to = 0;
  };
  Range SequentialRange(const Stream& s, uint64_t off, uint64_t len, uint64_t file_size) const;
  // Where a read starting a tensor at `off` asks up to at once: the tensor's end, at most a window
  // (max_window, or initial_window if that is larger) past `off`.
  uint64_t TensorRangeEnd(uint64_t off, const Place& place) const;
  // The end of the stream's scheduled window, in whole chunks, from `from` (no further than
  // file_size).
  uint64_t WindowEnd(uint64_t from, uint64_t window, uint64_t file_size) const;
  // Where the region cap stops this stream's prefetch (UINT64_MAX: no cap). A stream still inside
  // the region it began in stops at its end; "inside" allows RegionSlack past it.
  uint64_t RegionCap(const Stream& s) const;
  // How far past a region's end reads still count as inside it (kernel readahead).
  uint64_t RegionSlack(uint64_t region_end) const;
  // The reader at `end` waited for the network: its stream's window doubles (up to max_window).
  // True if a stream (one that has had a sequential read) matched.
  bool Grow(uint64_t end);
  // Cross-file lookahead: the stream at offset 0 that carries a window on to the file's reader,
  // made with `window` if there is no stream (*created then true). Null if the file's first stream
  // is a reader's (it has read past 0): a lookahead no longer drives it.
  Stream* Seed(uint64_t window, bool* created);
  // Blocks were dropped: every stream schedules again from its position.
  void Rewind();

 private:
  Limits limits_;
  std::vector<uint64_t> regions_;
  std::vector<Stream> streams_;
};

}  // namespace modelfs
