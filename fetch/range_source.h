// RangeSource: the seam between the cache and the network. "Bytes [offset, offset+len) of blob X"
// in, bytes out. The HTTP implementation (fetch/http_range_source.h) resolves the hub's redirects,
// sends ranged GETs, checks every response and retries; tests use fakes from tests/testing/.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>

#include "common/repo.h"
#include "common/status.h"

namespace modelfs {

class RangeSource {
 public:
  virtual ~RangeSource() = default;

  // Fills buf[0, len) with bytes [offset, offset+len) of `blob`.
  // Preconditions: offset + len <= blob.size, len > 0, buf has room for len bytes (caller owns it).
  // Returns OK only when exactly len bytes were received and every protocol check passed (status,
  // Content-Range, length). Errors: NotFound (file gone at that commit), PermissionDenied (gated,
  // private, bad token), Unavailable (network, 5xx, stalls, after retries), InvalidArgument (a
  // server answer that broke the protocol, after retries).
  // `served_by`, if not null, receives a short label of the host that sent the bytes (for logs when
  // verification later fails). Thread-safe: many calls run concurrently.
  virtual Status ReadAt(const BlobRef& blob, uint64_t offset, size_t len, char* buf,
                        std::string* served_by) = 0;

  // Called as bytes land: `n` bytes at the start of buf are final (n only grows; bytes below it
  // are never written again, not even by a retry or a failover, which resume at n).
  using Progress = std::function<void(size_t n)>;

  // ReadAt that reports progress, so a caller can hand the first bytes of a large range to a
  // reader while the rest is still on the wire (a far link's first byte comes one RTT after the
  // request, the last one seconds later). The same contract as ReadAt otherwise. A source that
  // cannot stream reports once, at the end (this default).
  virtual Status ReadAtStreaming(const BlobRef& blob, uint64_t offset, size_t len, char* buf,
                                 std::string* served_by, const Progress& progress) {
    Status s = ReadAt(blob, offset, len, buf, served_by);
    if (s.ok() && progress) progress(len);
    return s;
  }

  // A hint that bytes of `blob` will probably be read soon (the file was looked up or opened):
  // a source may prepare what a first read needs (resolve the file's URL, open a connection), in
  // the background. Never blocks; the default does nothing.
  virtual void Prepare(const BlobRef& blob) {}

  // The source's measured round-trip latency in microseconds (0 = not known), e.g. from the API
  // calls that listed the repo before any byte was read. The cache sizes a stream's first
  // prefetch window by it until it has measured a range of its own. Thread-safe; cheap.
  virtual uint64_t LatencyHintUs() const { return 0; }

  // Tells the source that bytes of `blob` which ReadAt reported as served by `served_by` failed
  // verification (SHA-256 / git blob id). A source with several mirrors stops reading this file
  // from that mirror (for its cool-down) so that the caller's refetch goes elsewhere; it counts
  // and logs the event. The default does nothing (one source: the refetch goes to the same place).
  // Thread-safe; cheap; never blocks on the network.
  virtual void ReportBadSource(const BlobRef& blob, const std::string& served_by) {}
};

}  // namespace modelfs
