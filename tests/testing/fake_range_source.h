// FakeRangeSource: an in-memory RangeSource for cache tests. Serves registered blobs, records
// every request, and can inject failures, delays and wrong bytes.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstring>
#include <map>
#include <mutex>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "cache/hash.h"
#include "fetch/range_source.h"

namespace modelfs::testing {

class FakeRangeSource : public RangeSource {
 public:
  // Registers `content` and returns a BlobRef for it (hash computed like the hub would).
  BlobRef Add(const std::string& path, std::string content, bool lfs = true) {
    BlobRef r;
    r.repo = RepoId{"model", "org", "repo"};
    r.commit = std::string(40, 'a');
    r.path = path;
    r.size = content.size();
    r.hash_kind = lfs ? HashKind::kSha256 : HashKind::kGitSha1;
    r.hash = HashHex(r.hash_kind, content.data(), content.size());
    r.key = (lfs ? "sha256-" : "gitsha1-") + r.hash;
    std::lock_guard<std::mutex> l(mu_);
    blobs_[r.key] = std::move(content);
    return r;
  }

  Status ReadAt(const BlobRef& blob, uint64_t offset, size_t len, char* buf,
                std::string* served_by) override {
    if (delay_ms > 0) std::this_thread::sleep_for(std::chrono::milliseconds(delay_ms.load()));
    std::lock_guard<std::mutex> l(mu_);
    requests_.emplace_back(offset, len);
    if (fail_next > 0) {
      fail_next--;
      return Status::Unavailable("injected failure");
    }
    auto it = blobs_.find(blob.key);
    if (it == blobs_.end()) return Status::NotFound("no such blob");
    if (offset + len > it->second.size()) return Status::InvalidArgument("range past EOF");
    memcpy(buf, it->second.data() + offset, len);
    if (corrupt_next > 0) {
      corrupt_next--;
      buf[0] ^= 0x5a;
    }
    bytes_ += len;
    if (served_by) *served_by = "fake-mirror";
    return Status::Ok();
  }

  // With hold_after_bytes = N > 0, a streaming read reports its first N bytes, then waits (10 s at
  // most) for Release() before it reports the rest: a range still on the wire.
  Status ReadAtStreaming(const BlobRef& blob, uint64_t offset, size_t len, char* buf, std::string* served_by,
                         const Progress& progress) override {
    const size_t hold = hold_after_bytes.load();
    if (hold == 0 || hold >= len || !progress) {
      return RangeSource::ReadAtStreaming(blob, offset, len, buf, served_by, progress);
    }
    Status s = ReadAt(blob, offset, len, buf, served_by);
    if (!s.ok()) return s;
    progress(hold);
    {
      std::unique_lock<std::mutex> l(gate_mu_);
      held_++;
      gate_cv_.notify_all();
      gate_cv_.wait_for(l, std::chrono::seconds(10), [&] { return released_; });
    }
    progress(len);
    return s;
  }
  void Release() {
    std::lock_guard<std::mutex> l(gate_mu_);
    released_ = true;
    gate_cv_.notify_all();
  }
  // Waits (5 s at most) until n streaming reads are held; true if they are.
  bool WaitHeld(int n) {
    std::unique_lock<std::mutex> l(gate_mu_);
    return gate_cv_.wait_for(l, std::chrono::seconds(5), [&] { return held_ >= n; });
  }

  std::vector<std::pair<uint64_t, size_t>> requests() {
    std::lock_guard<std::mutex> l(mu_);
    return requests_;
  }
  size_t request_count() {
    std::lock_guard<std::mutex> l(mu_);
    return requests_.size();
  }
  uint64_t bytes() {
    std::lock_guard<std::mutex> l(mu_);
    return bytes_;
  }
  void ClearRequests() {
    std::lock_guard<std::mutex> l(mu_);
    requests_.clear();
    bytes_ = 0;
  }

  std::atomic<int> fail_next{0};     // the next N requests fail with Unavailable
  std::atomic<int> corrupt_next{0};  // the next N requests return one flipped byte
  std::atomic<int> delay_ms{0};      // every request waits this long first
  std::atomic<size_t> hold_after_bytes{0};  // see ReadAtStreaming

 private:
  std::mutex mu_;
  std::map<std::string, std::string> blobs_;
  std::vector<std::pair<uint64_t, size_t>> requests_;
  uint64_t bytes_ = 0;
  std::mutex gate_mu_;  // guards released_, held_
  std::condition_variable gate_cv_;
  bool released_ = false;
  int held_ = 0;
};

// Deterministic pseudo-random bytes.
inline std::string RandomBytes(size_t n, uint32_t seed) {
  std::string s(n, '\0');
  uint64_t x = seed * 0x9E3779B97F4A7C15ull + 1;
  for (size_t i = 0; i < n; i++) {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    s[i] = static_cast<char>(x);
  }
  return s;
}

}  // namespace modelfs::testing
