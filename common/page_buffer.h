// PageBuffer: a large I/O buffer (a 4 MiB chunk, a 1 MiB FUSE reply) in its own anonymous mapping,
// aligned to 2 MiB and marked MADV_HUGEPAGE. The kernel then faults it in as huge pages where it
// can (buffers of 2 MiB and more; smaller ones are whole small pages): two faults for a chunk instead of 1,024. On a virtual machine a fault costs microseconds,
// and first touches of fresh buffers were about a tenth of the daemon's CPU on a cold read. The
// bytes are not initialized (the kernel hands out zeroed pages; nothing here writes them again).
//
// Holders keep buffers for reuse (a pool); freeing one unmaps it. Thread-compatible.
#pragma once

#include <cstddef>
#include <memory>

namespace modelfs {

struct PageBufferFree {
  size_t len = 0;
  void operator()(char* p) const;
};
using PageBuffer = std::unique_ptr<char[], PageBufferFree>;

// A buffer of at least `len` bytes. Never null: aborts when the address space is exhausted, as
// operator new would.
PageBuffer NewPageBuffer(size_t len);

}  // namespace modelfs
