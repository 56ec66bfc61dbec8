// RangeSource: the seam between the cache and the network. "Bytes [offset, offset+len) of blob X"
// in, bytes out. The HTTP implementation (fetch/http_range_source.h) resolves the hub's redirects,
// sends ranged GETs, checks every response and retries; tests use fakes from tests/testing/.
#pragma once

#include <cstddef>
#include <cstdint>
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
};

}  // namespace modelfs
