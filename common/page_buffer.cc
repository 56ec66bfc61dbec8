#include "common/page_buffer.h"

#include <sys/mman.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>

namespace modelfs {
namespace {

constexpr size_t kPage = 4096;
constexpr size_t kHugePage = 2u << 20;

// Bytes mapped for a buffer of `len`: whole small pages below a huge page, whole huge pages above.
size_t MappedSize(size_t len) {
  const size_t unit = len < kHugePage ? kPage : kHugePage;
  return (len + unit - 1) / unit * unit;
}

}  // namespace

void PageBufferFree::operator()(char* p) const {
  if (p != nullptr) munmap(p, len);
}

PageBuffer NewPageBuffer(size_t len) {
  const size_t size = MappedSize(len);
  if (len < kHugePage) {  // a huge page would cost more memory than it saves faults
    void* p = mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) {
      fprintf(stderr, "modelfs: cannot map a %zu-byte buffer\n", size);
      abort();
    }
    return PageBuffer(static_cast<char*>(p), PageBufferFree{size});
  }
  // Map one huge page more than asked and trim both ends, so the buffer starts on a boundary.
  void* raw = mmap(nullptr, size + kHugePage, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (raw == MAP_FAILED) {
    fprintf(stderr, "modelfs: cannot map a %zu-byte buffer\n", size);
    abort();
  }
  const uintptr_t start = reinterpret_cast<uintptr_t>(raw);
  const uintptr_t aligned = (start + kHugePage - 1) / kHugePage * kHugePage;
  if (aligned > start) munmap(raw, aligned - start);
  const uintptr_t tail = aligned + size, end = start + size + kHugePage;
  if (end > tail) munmap(reinterpret_cast<void*>(tail), end - tail);
  char* p = reinterpret_cast<char*>(aligned);
  madvise(p, size, MADV_HUGEPAGE);  // a hint: without THP the buffer works in small pages
  return PageBuffer(p, PageBufferFree{size});
}

size_t PageBufferPool::waiting() const {
  std::lock_guard<std::mutex> l(mu_);
  return waiting_;
}

PageBuffer PageBufferPool::Get(size_t len) {
  if (len > bytes_) return NewPageBuffer(len);
  {
    std::unique_lock<std::mutex> l(mu_);
    if (max_out_ > 0 && out_ >= max_out_) {
      waiting_++;
      returned_.wait(l, [this] { return out_ < max_out_; });
      waiting_--;
    }
    out_++;
    if (!free_.empty()) {
      PageBuffer b = std::move(free_.back());
      free_.pop_back();
      return b;
    }
  }
  if (shared_) shared_->held_ += MappedSize(bytes_);
  return NewPageBuffer(bytes_);
}

void PageBufferPool::Put(PageBuffer b) {
  // Not one of ours (smaller, or one of its own from Get(len) past bytes_): unmapped here, and
  // never counted as one given back.
  if (!b || b.get_deleter().len != MappedSize(bytes_)) return;
  if (shared_) {
    // Kept while every pool sharing the bound holds at most its bytes (this buffer counted).
    const size_t size = MappedSize(bytes_);
    if (shared_->held_.load() > shared_->max_bytes_) {
      shared_->held_ -= size;
      std::lock_guard<std::mutex> l(mu_);
      if (out_ > 0) out_--;
      return;  // unmapped here
    }
    std::lock_guard<std::mutex> l(mu_);
    if (out_ > 0) out_--;
    free_.push_back(std::move(b));
    return;
  }
  std::lock_guard<std::mutex> l(mu_);
  if (out_ > 0) out_--;
  returned_.notify_one();
  // Kept only while the buffers in use and the free ones together stay within keep_: a burst of
  // users beyond it gives its extra buffers back to the kernel as they finish.
  if (out_ + free_.size() < keep_) free_.push_back(std::move(b));
}

}  // namespace modelfs
