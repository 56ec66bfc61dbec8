#include "cache/stream_tracker.h"

#include <algorithm>

namespace modelfs {

uint64_t StreamTracker::Reorder() const { return std::max(kSeekBackTolerance, 2 * limits_.kernel_readahead); }

StreamTracker::Stream* StreamTracker::Find(uint64_t off) {
  const uint64_t reorder = Reorder();
  for (auto& s : streams_) {
    if (off + reorder >= s.next && off <= s.next + kSeekForwardTolerance) return &s;
  }
  return nullptr;
}

StreamTracker::Place StreamTracker::PlaceOf(uint64_t off, uint64_t len) const {
  auto region_end = std::upper_bound(regions_.begin(), regions_.end(), off);
  if (region_end != regions_.end() && *region_end - off < kPageSize && off + len > *region_end) ++region_end;
  Place p;
  p.in_tensor = region_end != regions_.end() && region_end != regions_.begin();
  if (p.in_tensor) {
    p.first_tensor = region_end == regions_.begin() + 1;
    p.region_begin = *(region_end - 1);
    p.region_end = *region_end;
  }
  return p;
}

bool StreamTracker::Jumped(const Stream* s, uint64_t off) const {
  if (s == nullptr) return true;
  if (off <= s->next + limits_.block_size || off < s->prefetched_to) return false;
  // Not a jump but the kernel's readahead running past the end of the tensor the stream is in (a
  // large read makes it read up to max_readahead further): that must not start a fetch of the
  // next tensor.
  const uint64_t cap = RegionCap(*s);
  return !(cap != UINT64_MAX && off >= cap && off <= cap + RegionSlack(cap));
}

StreamTracker::Stream* StreamTracker::Start(uint64_t off, uint64_t len, uint64_t window, uint64_t now) {
  if (streams_.size() >= kMaxStreams) {
    auto lru = std::min_element(streams_.begin(), streams_.end(),
                                [](const Stream& x, const Stream& y) { return x.last_use < y.last_use; });
    streams_.erase(lru);
  }
  streams_.push_back(Stream{off + len, window, 0, 0, now, off});
  return &streams_.back();
}

void StreamTracker::EnterRegion(Stream& s, uint64_t off, uint64_t len, const Place& place, uint64_t now) const {
  s.start = std::max(off, place.region_begin);  // a new region: its cap applies to this stream now
  s.next = off + len;
  s.hits = 0;
  s.last_use = now;
}

void StreamTracker::Continue(Stream& s, uint64_t off, uint64_t len, uint64_t min_window, uint64_t now) const {
  s.hits++;
  s.window = std::max(s.window, min_window);
  s.next = std::max(s.next, off + len);
  s.last_use = now;
}

uint64_t StreamTracker::WindowEnd(uint64_t from, uint64_t window, uint64_t file_size) const {
  const uint64_t chunk = limits_.chunk_size;
  return std::min(file_size, (from + window + chunk - 1) / chunk * chunk);
}

StreamTracker::Range StreamTracker::SequentialRange(const Stream& s, uint64_t off, uint64_t len,
                                                    uint64_t file_size) const {
  // From this read's own first block: one request for the rest of its chunk, not one for the
  // block the reader is about to miss on and another for the blocks after it. Whole aligned
  // chunks at the far end: the same requests on every machine, for a shared cache to reuse.
  Range r;
  r.from = std::max(s.prefetched_to, (off / limits_.block_size) * limits_.block_size);
  r.to = std::min(WindowEnd(off + len, s.window, file_size), RegionCap(s));
  return r;
}

uint64_t StreamTracker::TensorRangeEnd(uint64_t off, const Place& place) const {
  return std::min(place.region_end, off + std::max(limits_.max_window, limits_.initial_window));
}

uint64_t StreamTracker::RegionCap(const Stream& s) const {
  // "Inside" allows the kernel's readahead past the end of a tensor (up to kSeekForwardTolerance,
  // the readahead we ask for): a loader reading one tensor makes the kernel read on past it, and
  // that alone must not turn it into a sequential reader whose window runs further still. The
  // header is read with small reads (8 bytes, then the JSON: the kernel reads 16 KiB), so a
  // stream that began there is a sequential reader as soon as it is a little past it: a loader of
  // every tensor, or dd.
  if (regions_.empty() || s.whole) return UINT64_MAX;
  auto region_end = std::upper_bound(regions_.begin(), regions_.end(), s.start);
  if (region_end == regions_.end()) return UINT64_MAX;
  return s.next <= *region_end + RegionSlack(*region_end) ? *region_end : UINT64_MAX;
}

uint64_t StreamTracker::RegionSlack(uint64_t region_end) const {
  // Past a tensor: the readahead we ask the kernel for. Past the header: what the kernel reads
  // ahead of a reader of the header alone (its readahead window grows 4x per step as the JSON is
  // read), but not so much that a sequential reader waits long for its prefetch.
  if (region_end != regions_.front()) return std::max(kSeekForwardTolerance, 2 * limits_.kernel_readahead);
  return std::min(kSeekForwardTolerance, std::max(kHeaderSlack, 8 * region_end));
}

bool StreamTracker::Grow(uint64_t end) {
  // The window (and with it the number of chunks in flight, i.e. parallel connections) is too
  // small for this link's bandwidth-delay product, so double it. While prefetch keeps ahead it
  // stays as it is: on a fast local link a few connections suffice, and more only compete for the
  // server and the CPU.
  for (auto& s : streams_) {
    if (end + kSeekBackTolerance >= s.next && end <= s.next + kSeekForwardTolerance && s.hits > 0) {
      s.window = std::min(s.window * 2, limits_.max_window);
      return true;
    }
  }
  return false;
}

StreamTracker::Stream* StreamTracker::Seed(uint64_t window, bool* created) {
  *created = streams_.empty();
  if (*created) streams_.push_back(Stream{0, window, 0, 1, 0, 0});
  Stream& s = streams_.front();
  return s.next == 0 ? &s : nullptr;
}

void StreamTracker::Rewind() {
  for (auto& s : streams_) s.prefetched_to = 0;
}

}  // namespace modelfs
