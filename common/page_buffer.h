// PageBuffer: a large I/O buffer (a 4 MiB chunk, a 1 MiB FUSE reply) in its own anonymous mapping,
// aligned to 2 MiB and marked MADV_HUGEPAGE. The kernel then faults it in as huge pages where it
// can (buffers of 2 MiB and more; smaller ones are whole small pages): two faults for a chunk instead of 1,024. On a virtual machine a fault costs microseconds,
// and first touches of fresh buffers were about a tenth of the daemon's CPU on a cold read. The
// bytes are not initialized (the kernel hands out zeroed pages; nothing here writes them again).
//
// Holders keep buffers for reuse (PageBufferPool); freeing one unmaps it. Thread-compatible.
#pragma once

#include <atomic>
#include <condition_variable>
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
// (a fresh buffer per use costs its faults and zero pages again). A buffer given back is kept
// while the buffers in use and the free ones number under `keep`, else unmapped: the pool's memory
// is max(keep, buffers in use) x bytes, never the users' peak plus a full free list. With `max_out`
// (0 = none), Get waits while that many are in use: the pool's memory is then at most
// max(keep, max_out) x bytes. A caller that waits there must hold nothing another user needs. Get(len) for len above `bytes` hands out a buffer of its own, never
// pooled. Thread-safe.
//
// Pools of different sizes can keep under one bound instead (PageBufferKeep): a buffer given back
// is kept while all of them hold, in use and free, at most its bytes.
class PageBufferKeep {
 public:
  explicit PageBufferKeep(size_t max_bytes) : max_bytes_(max_bytes) {}

 private:
  friend class PageBufferPool;
  const size_t max_bytes_;
  std::atomic<size_t> held_{0};  // mapped bytes of the pools' buffers, in use and free
};

class PageBufferPool {
 public:
  PageBufferPool(size_t bytes, size_t keep, size_t max_out = 0) : bytes_(bytes), keep_(keep), max_out_(max_out) {}
  PageBufferPool(size_t bytes, std::shared_ptr<PageBufferKeep> shared)
      : bytes_(bytes), keep_(0), max_out_(0), shared_(std::move(shared)) {}
  PageBuffer Get(size_t len);
  PageBuffer Get() { return Get(bytes_); }
  void Put(PageBuffer b);
  // Gets waiting at max_out for a buffer to come back, now (a test knows a waiter is blocked).
  size_t waiting() const;

 private:
  const size_t bytes_, keep_, max_out_;
  const std::shared_ptr<PageBufferKeep> shared_;  // null: keep_ bounds what this pool keeps
  mutable std::mutex mu_;
  std::condition_variable returned_;  // a buffer came back (Get waits on it at max_out_)
  std::vector<PageBuffer> free_;  // guarded by mu_
  size_t out_ = 0;                // pool buffers handed out and not given back; guarded by mu_
  size_t waiting_ = 0;            // Gets waiting at max_out_; guarded by mu_
};

}  // namespace modelfs
