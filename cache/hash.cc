#include "cache/hash.h"

#include <openssl/evp.h>
#include <xxhash.h>

namespace modelfs {

#if defined(__x86_64__) && defined(MODELFS_XXH3_AVX2)
uint64_t Xxh3Avx2(const void* data, size_t len);  // cache/xxh3_avx2.cc
#endif

namespace {
uint64_t Xxh3(const void* data, size_t len) {
#if defined(__x86_64__) && defined(MODELFS_XXH3_AVX2)
  static const bool avx2 = __builtin_cpu_supports("avx2");
  if (avx2) return Xxh3Avx2(data, len);
#endif
  return XXH3_64bits(data, len);
}
}  // namespace

uint64_t BlockChecksum(const void* data, size_t len) {
  uint64_t h = Xxh3(data, len);
  return h == 0 ? 1 : h;
}

struct FileHasher::Impl {
  EVP_MD_CTX* ctx = nullptr;
};

FileHasher::FileHasher(HashKind kind, uint64_t size) : impl_(new Impl) {
  impl_->ctx = EVP_MD_CTX_new();
  EVP_DigestInit_ex(impl_->ctx, kind == HashKind::kSha256 ? EVP_sha256() : EVP_sha1(), nullptr);
  if (kind == HashKind::kGitSha1) {
    std::string header = "blob " + std::to_string(size);
    EVP_DigestUpdate(impl_->ctx, header.data(), header.size() + 1);  // includes the NUL
  }
}

FileHasher::~FileHasher() { EVP_MD_CTX_free(impl_->ctx); }

void FileHasher::Update(const void* data, size_t len) { EVP_DigestUpdate(impl_->ctx, data, len); }

std::string FileHasher::FinishHex() {
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int n = 0;
  EVP_DigestFinal_ex(impl_->ctx, md, &n);
  static const char* kHex = "0123456789abcdef";
  std::string out;
  for (unsigned i = 0; i < n; i++) {
    out.push_back(kHex[md[i] >> 4]);
    out.push_back(kHex[md[i] & 15]);
  }
  return out;
}

std::string HashHex(HashKind kind, const void* data, size_t len) {
  FileHasher h(kind, len);
  h.Update(data, len);
  return h.FinishHex();
}

}  // namespace modelfs
