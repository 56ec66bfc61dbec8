// Hashes the cache needs: XXH3-64 per block (cheap, checked on every cache read) and the whole-file
// hash the hub publishes (SHA-256 for LFS files, git blob SHA-1 for small files), computed with
// OpenSSL's accelerated implementations.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include "common/repo.h"

namespace modelfs {

// XXH3-64 of a block. Never 0: 0 marks "no checksum" in the block index, so a real 0 maps to 1.
uint64_t BlockChecksum(const void* data, size_t len);

// Streaming whole-file hasher. For kGitSha1 the git header "blob <size>\0" is fed first, so the
// digest equals the git blob id the tree API reports.
class FileHasher {
 public:
  FileHasher(HashKind kind, uint64_t size);
  ~FileHasher();
  FileHasher(const FileHasher&) = delete;
  FileHasher& operator=(const FileHasher&) = delete;
  void Update(const void* data, size_t len);
  std::string FinishHex();  // lowercase hex digest

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// One-shot convenience.
std::string HashHex(HashKind kind, const void* data, size_t len);

}  // namespace modelfs
