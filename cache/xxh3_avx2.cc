// XXH3-64 built for AVX2 (this file alone is compiled with -mavx2; see CMakeLists.txt). Debian's
// libxxhash is built for baseline x86-64 (SSE2): on the machines we measured, 20 GB/s against
// 44 GB/s here, and the block checksum runs on every byte the cache writes. The digest is the
// same whatever the vector width (XXH3 is defined on its arithmetic, not on the instructions).
// BlockChecksum (cache/hash.cc) calls this only where the CPU has AVX2.
#if defined(__x86_64__) && defined(__AVX2__)
#define XXH_INLINE_ALL
#include <xxhash.h>

#include <cstddef>
#include <cstdint>

namespace modelfs {

uint64_t Xxh3Avx2(const void* data, size_t len) { return XXH3_64bits(data, len); }

}  // namespace modelfs
#endif
