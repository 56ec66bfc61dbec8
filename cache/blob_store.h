// BlobStore: the cache's one face to the filesystem. fs asks for bytes of a blob; the store answers
// from its on-disk blocks or fetches them (merging identical in-flight fetches, prefetching ahead of
// sequential readers) through a RangeSource. The disk implementation is cache/disk_blob_store.h.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "common/repo.h"
#include "common/status.h"

namespace modelfs {

// Where a read's bytes go: a buffer the caller already has, or one taken by `take` only when the
// first byte is about to be copied. A read that waits for the network, or is answered with a
// FileSpan, then holds no buffer meanwhile: a bounded pool of reply buffers (the FUSE adapter's)
// is not drained by reads that are waiting on a far mirror. `take` is called at most once, with no
// lock of the store held, and may wait; it must return room for the read's len.
class ReadDest {
 public:
  ReadDest(char* buf) : buf_(buf) {}  // NOLINT(google-explicit-constructor): a char* is a destination
  explicit ReadDest(std::function<char*()> take) : take_(std::move(take)) {}
  char* get() {
    if (buf_ == nullptr && take_) buf_ = take_();
    return buf_;
  }
  // Whether a buffer is there already (a caller's, or one taken).
  bool has_buffer() const { return buf_ != nullptr; }

 private:
  char* buf_ = nullptr;
  std::function<char*()> take_;
};

class BlobStore {
 public:
  virtual ~BlobStore() = default;

  // Copies bytes [offset, offset+len) of `blob` into buf (owned by the caller, room for len) and sets
  // *n to the count copied: len, or less only when the range crosses EOF (0 at or past EOF).
  // A corrupt cached block is a miss that is refetched, never an error. Errors come from the
  // network (see RangeSource::ReadAt) when a needed block is missing and cannot be fetched.
  // Blocks without a bound: no, every network wait below is bounded by fetch timeouts.
  // Thread-safe.
  virtual Status Read(const BlobRef& blob, uint64_t offset, size_t len, char* buf, size_t* n) = 0;

  // Where a range of a blob lies in a file of the store, for a reader the kernel serves by copying
  // from that file itself (splice) instead of through the caller's memory. `hold` keeps the bytes
  // where they are (no drop, no eviction) until the caller lets go of it, after the copy.
  // Or where the range lies in the store's memory (mem != null: bytes fetched and not yet let go
  // of), for a reply written straight from there.
  struct FileSpan {
    bool fd_ok = true;  // in: the caller can use an fd span (else only memory spans are given)
    int fd = -1;
    uint64_t pos = 0;  // offset in fd
    const char* mem = nullptr;
    size_t len = 0;
    std::shared_ptr<void> hold;
  };
  // Read, except that where every block of the range is on disk and was checked in this run (see
  // cache/block_file.h) the store may fill *span (span->fd >= 0, len: what Read would copy), or
  // where the range arrived in one fetch buffer, span->mem, and take no buffer from dest. Everything else Read does holds: the prefetch, the end-of-file hash
  // check (and its error), a strict store's verification (spans of such a store only once the
  // file verified). The default copies. Thread-safe.
  virtual Status ReadOrSpan(const BlobRef& blob, uint64_t offset, size_t len, ReadDest dest, size_t* n,
                            FileSpan* span) {
    return Read(blob, offset, len, dest.get(), n);
  }

  // A file handle on `blob` was opened / released. Open blobs are not evicted. A store that
  // fetches may start fetching the file's head on open (DiskBlobStore fetches its first 128 KiB,
  // the safetensors header, in the background, so the first read finds it on the wire). Calls
  // nest (counted). Thread-safe.
  virtual void OpenBlob(const BlobRef& blob) = 0;
  virtual void CloseBlob(const BlobRef& blob) = 0;

  // A hint: `blob` was looked up (stat, ls -l) and may be read soon. A store may prepare the
  // first read (resolve the file's URL) in the background. Never blocks. Thread-safe.
  virtual void PrepareBlob(const BlobRef& blob) {}

  // A hint: a reader that reads all of `blob` is likely to read `next` after it (the next shard of
  // a sharded checkpoint). A store may start fetching `next` when a stream over `blob` nears its
  // end, so a loader walking shard after shard finds the next one on the wire. Thread-safe.
  virtual void HintNext(const BlobRef& blob, const BlobRef& next) {}

  // A hint: a loader read the index of a sharded checkpoint whose first shard is `blob`: it is
  // about to open it and read all of it, in file order or in its own. A store may resolve it and
  // fetch its head now, and fetch all of it from the first tensor read. Never blocks. Thread-safe.
  virtual void HintLoad(const BlobRef& blob) {}

  // Registers `cb` (empty: unregisters), called with a content key after the store dropped that
  // content because its whole-file hash did not match, so the filesystem can drop the kernel's
  // cached pages of every file with that content. Called from a background thread; never called
  // after Set...(nullptr) has returned. The default store never drops verified content.
  virtual void SetInvalidateCallback(std::function<void(const std::string& key)> cb) {}

  // Times `blob`'s whole-file hash failed since the store opened; grows just before its bytes
  // are dropped. A reader that was given bytes of the blob and then sees this grow was given
  // bytes that may be wrong (fs/ answers it EIO from then on). Thread-safe, no I/O.
  virtual uint64_t HashFailures(const BlobRef& blob) { return 0; }
  // Whether the blob's whole-file hash matched (its bytes, cached by the kernel too, are good).
  virtual bool IsVerified(const std::string& key) { return true; }
  // A reader has read all of the file but the bytes it asks for next, its last: fetch what is
  // missing (bytes it was given that the cache could not keep) and wait until the whole-file hash
  // has judged the file. Corruption if it failed; Ok if it matched, or if the file cannot be
  // completed (no room, a fetch failed: then it is not judged, as for a reader of a few tensors).
  virtual Status CompleteForReader(const BlobRef& blob) { return Status::Ok(); }
};

}  // namespace modelfs
