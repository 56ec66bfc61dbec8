// PageBuffer: a large I/O buffer (a 4 MiB chunk, a 1 MiB FUSE reply) in its own anonymous mapping,
// aligned to 2 MiB and marked MADV_HUGEPAGE. The kernel then faults it in as huge pages where it
// can (buffers of 2 MiB and more; smaller ones are whole small pages): two faults for a chunk instead of 1,024. On a virtual machine a fault costs microseconds,
// and first touches of fresh buffers were about a tenth of the daemon's CPU on a cold read. The
// bytes are not initialized (the kernel hands out zeroed pages; nothing here writes them again).
//
// Holders keep buffers for reuse (PageBufferPool); freeing one unmaps it. Thread-compatible.
#pragma once

#include <cstddef>
#include <memory>
#include <mutex>
#include <vector>

namespace modelfs {

struct PageBufferFree {
  size_t len = 0;
  void operator()(char* p) const;
};
using PageBuffer = std::unique_ptr<char[], PageBufferFree>;

// A buffer of at least `len` bytes. Never null: aborts when the address space is exhausted, as
// operator new would.
PageBuffer NewPageBuffer(size_t len);

// Recycled buffers of `bytes` each, most recently used first, so the ones in use stay faulted in
// (a fresh buffer per use costs its faults and zero pages again). Keeps up to `keep` free; more
// given back are unmapped. Get(len) for len above `bytes` hands out a buffer of its own, never
// pooled. Thread-safe.
class PageBufferPool {
 public:
  PageBufferPool(size_t bytes, size_t keep) : bytes_(bytes), keep_(keep) {}
  PageBuffer Get(size_t len);
  PageBuffer Get() { return Get(bytes_); }
  void Put(PageBuffer b);

 private:
  const size_t bytes_, keep_;
  std::mutex mu_;
  std::vector<PageBuffer> free_;  // guarded by mu_
};

}  // namespace modelfs
