// The fixture and helpers the DiskBlobStore tests share (disk_blob_store_*_test.cc): a store over
// a temporary cache directory and a FakeRangeSource, whole-file readers, a safetensors file
// generator and ReadOrSpan's bytes. One fixture type for all of them (gtest requires it of a suite).
#pragma once

#include "cache/disk_blob_store.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <sys/stat.h>
#include <sys/statvfs.h>

#include <atomic>
#include <filesystem>
#include <set>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "cache/pins.h"
#include "tests/testing/fake_range_source.h"
#include "tests/testing/temp_dir.h"

namespace modelfs {

// A safetensors file: the named U8 tensors of the given lengths one after another, their data
// starting at 1 KiB (the header padded with spaces), random bytes.
inline std::string SafetensorsAt1KiB(const std::vector<std::pair<std::string, uint64_t>>& tensors, uint32_t seed) {
  std::string h = "{";
  uint64_t off = 0;
  for (const auto& [name, len] : tensors) {
    h += std::string(off ? "," : "") + "\"" + name + "\":{\"dtype\":\"U8\",\"shape\":[" + std::to_string(len) +
         "],\"data_offsets\":[" + std::to_string(off) + "," + std::to_string(off + len) + "]}";
    off += len;
  }
  h += "}";
  h.append(1024 - 8 - h.size(), ' ');
  std::string le(8, '\0');
  for (int i = 0; i < 8; i++) le[i] = static_cast<char>((h.size() >> (8 * i)) & 0xff);
  return le + h + testing::RandomBytes(off, seed);
}

class DiskBlobStoreTest : public ::testing::Test {
 protected:
  std::unique_ptr<DiskBlobStore> NewStore(uint64_t max_bytes = 0, bool verify_before_read = false) {
    CacheOptions o;
    o.dir = dir_.path();
    o.max_bytes = max_bytes;
    o.verify_before_read = verify_before_read;
    o.fetch_threads = 4;
    auto s = DiskBlobStore::Open(o, &source_);
    EXPECT_TRUE(s.ok()) << s.status().ToString();
    return std::move(s).value();
  }
  std::string ReadAll(DiskBlobStore* store, const BlobRef& ref, size_t step = kBlockSize) {
    std::string out;
    std::vector<char> buf(step);
    for (uint64_t off = 0;; off += step) {
      size_t n = 0;
      Status s = store->Read(ref, off, step, buf.data(), &n);
      EXPECT_TRUE(s.ok()) << s.ToString();
      if (!s.ok() || n == 0) break;
      out.append(buf.data(), n);
    }
    return out;
  }
  // Reads the blob from its first byte to its end as `cat` does; *err receives the first error
  // (reading stops there).
  // Reads the file front to back as one open file handle of the mount does (ModelFs::Read): the
  // store gates the read that reaches the end on the hash, and the handle fails every read after
  // a hash failure of the file it was given bytes of. Together they make a whole-file reader get
  // an error, never a clean EOF, when the file it read fails its hash.
  std::string ReadUntilError(DiskBlobStore* store, const BlobRef& ref, Status* err) {
    std::string out;
    std::vector<char> buf(kBlockSize);
    *err = Status::Ok();
    const uint64_t failures0 = store->HashFailures(ref);
    for (uint64_t off = 0;; off += kBlockSize) {
      size_t n = 0;
      *err = store->Read(ref, off, kBlockSize, buf.data(), &n);
      if (err->ok() && store->HashFailures(ref) != failures0) *err = Status::Corruption("hash failed");
      if (!err->ok() || n == 0) break;
      out.append(buf.data(), n);
    }
    return out;
  }
  testing::TempDir dir_;
  testing::FakeRangeSource source_;
};

// ReadOrSpan hands out blocks as a range of the cache file (for splice) only once this run has
// checked them: written by it, or read back and matched against their XXH3; otherwise it copies,
// as Read. A block damaged on disk while no store was open is caught by its first read
// (refetched), never handed out unchecked.
inline std::string SpanBytes(const BlobStore::FileSpan& span) {
  std::string out(span.len, '\0');
  EXPECT_EQ(pread(span.fd, out.data(), out.size(), static_cast<off_t>(span.pos)), static_cast<ssize_t>(span.len));
  return out;
}

// One ReadOrSpan: the bytes, from the span (of the cache file or of memory) or the buffer;
// *spliced says whether from the file, *from_memory whether from a fetch buffer.
inline std::string ReadOrSpanBytes(DiskBlobStore* store, const BlobRef& ref, uint64_t off, size_t len, bool* spliced,
                            Status* st = nullptr, bool* from_memory = nullptr) {
  std::string buf(len, '\0');
  size_t n = 0;
  BlobStore::FileSpan span;
  Status s = store->ReadOrSpan(ref, off, len, buf.data(), &n, &span);
  if (st) *st = s;
  *spliced = span.fd >= 0;
  if (from_memory) *from_memory = span.mem != nullptr;
  if (!s.ok()) return "";
  if (*spliced) {
    EXPECT_EQ(n, span.len);
    return SpanBytes(span);
  }
  if (span.mem != nullptr) {
    EXPECT_EQ(n, span.len);
    return std::string(span.mem, span.len);
  }
  buf.resize(n);
  return buf;
}

}  // namespace modelfs
