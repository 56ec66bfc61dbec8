// MemoryBlobStore: an in-memory BlobStore for tests of fs/. Content is stored by content key
// (FileEntry::ContentKey), exactly as the real cache names it, so two entries with the same key
// share bytes. Counts reads and open/close calls per key; an error can be injected for reads.
// MakeFile builds a FileEntry for test content and stores the bytes in one step; its hashes are
// deterministic stand-ins (FNV-based hex), not real git/SHA-256 digests, which is enough for a
// store that never verifies; FailHash makes HashFailures grow as a failed hash would. Thread-safe.
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <map>
#include <mutex>
#include <set>
#include <string>
#include <vector>

#include "cache/blob_store.h"
#include "common/repo.h"
#include "common/status.h"

namespace modelfs::testing {

class MemoryBlobStore : public BlobStore {
 public:
  void Put(const std::string& key, std::string data) {
    std::lock_guard<std::mutex> l(mu_);
    blobs_[key] = std::move(data);
  }

  // A FileEntry for `content` at `path` (an LFS-style entry with a sha256 when `lfs`), whose bytes
  // are now in the store.
  FileEntry MakeFile(const std::string& path, const std::string& content, bool lfs = false) {
    FileEntry e;
    e.path = path;
    e.size = content.size();
    e.git_oid = FakeHex(content + "#git", 40);
    if (lfs) e.sha256 = FakeHex(content + "#sha", 64);
    Put(e.ContentKey(), content);
    return e;
  }
  static FileEntry MakeDir(const std::string& path) {
    FileEntry e;
    e.path = path;
    e.is_dir = true;
    return e;
  }

  // Non-ok: every later Read fails with it (Status::Ok() clears).
  void SetReadError(Status s) {
    std::lock_guard<std::mutex> l(mu_);
    read_error_ = std::move(s);
  }

  int opens(const std::string& key) const { return Get(opens_, key); }
  int closes(const std::string& key) const { return Get(closes_, key); }
  int reads() const {
    std::lock_guard<std::mutex> l(mu_);
    return reads_;
  }
  // The last BlobRef a Read was given.
  BlobRef last_read() const {
    std::lock_guard<std::mutex> l(mu_);
    return last_read_;
  }

  // Paths HintLoad was given, in order.
  std::vector<std::string> load_hints() const {
    std::lock_guard<std::mutex> l(mu_);
    return load_hints_;
  }
  void HintLoad(const BlobRef& blob) override {
    std::lock_guard<std::mutex> l(mu_);
    load_hints_.push_back(blob.path);
  }

  Status Read(const BlobRef& blob, uint64_t offset, size_t len, char* buf, size_t* n) override {
    std::lock_guard<std::mutex> l(mu_);
    ++reads_;
    last_read_ = blob;
    *n = 0;
    if (!read_error_.ok()) return read_error_;
    auto it = blobs_.find(blob.key);
    if (it == blobs_.end()) return Status::Unavailable("no blob " + blob.key);
    const std::string& d = it->second;
    if (offset >= d.size()) return Status::Ok();
    *n = std::min<size_t>(len, d.size() - offset);
    std::memcpy(buf, d.data() + offset, *n);
    return Status::Ok();
  }
  void OpenBlob(const BlobRef& blob) override {
    std::lock_guard<std::mutex> l(mu_);
    ++opens_[blob.key];
  }
  void CloseBlob(const BlobRef& blob) override {
    std::lock_guard<std::mutex> l(mu_);
    ++closes_[blob.key];
  }
  // As the disk store does when a whole-file hash fails (its bytes stay: the test decides).
  void FailHash(const std::string& key) {
    std::lock_guard<std::mutex> l(mu_);
    ++hash_failures_[key];
  }
  uint64_t HashFailures(const BlobRef& blob) override { return Get(hash_failures_, blob.key); }
  // CompleteForReader: counts the calls, and fails the hash of the blob (Corruption) when
  // FailHashOnComplete was called for it.
  void FailHashOnComplete(const std::string& key) {
    std::lock_guard<std::mutex> l(mu_);
    fail_on_complete_.insert(key);
  }
  Status CompleteForReader(const BlobRef& blob) override {
    std::lock_guard<std::mutex> l(mu_);
    ++completes_[blob.key];
    if (!fail_on_complete_.count(blob.key)) return Status::Ok();
    ++hash_failures_[blob.key];
    return Status::Corruption(blob.path + " failed its hash");
  }
  int completes(const std::string& key) const { return Get(completes_, key); }
  // Never verified unless MarkVerified says so.
  void MarkVerified(const std::string& key) {
    std::lock_guard<std::mutex> l(mu_);
    verified_.insert(key);
  }
  bool IsVerified(const std::string& key) override {
    std::lock_guard<std::mutex> l(mu_);
    return verified_.count(key) > 0;
  }

 private:
  static std::string FakeHex(const std::string& s, size_t len) {
    std::string out;
    uint64_t h = 1469598103934665603ull;  // FNV-1a offset basis
    while (out.size() < len) {
      for (unsigned char c : s) h = (h ^ c) * 1099511628211ull;  // FNV-1a prime
      char hex[17];
      std::snprintf(hex, sizeof hex, "%016llx", static_cast<unsigned long long>(h));
      out += hex;
    }
    return out.substr(0, len);
  }
  int Get(const std::map<std::string, int>& m, const std::string& key) const {
    std::lock_guard<std::mutex> l(mu_);
    auto it = m.find(key);
    return it == m.end() ? 0 : it->second;
  }

  mutable std::mutex mu_;  // guards everything below
  std::map<std::string, std::string> blobs_;
  std::map<std::string, int> opens_, closes_, hash_failures_, completes_;
  std::set<std::string> fail_on_complete_, verified_;
  std::vector<std::string> load_hints_;
  int reads_ = 0;
  BlobRef last_read_;
  Status read_error_;
};

}  // namespace modelfs::testing
