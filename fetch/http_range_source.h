// HttpRangeSource: RangeSource over the hub's /resolve/ endpoint and whatever CDN it redirects to.
//
// Two steps per read:
//  1. Resolve (cached): HEAD {EP}/{prefix}{repo}/resolve/{commit}/{quote(path)} with no automatic
//     redirects, no Range and Accept-Encoding: identity. Same-origin 3xx hops (relative or
//     absolute) are followed with the token, at most kMaxRedirects. The first redirect to another
//     origin is the signed CDN URL: it is recorded with its `Expires` and is fetched WITHOUT the
//     token. A 200 means "read from this URL" (with the token, it is the endpoint's origin).
//     Non-http(s) targets are refused. The answer is cached per (repo, commit, path) until
//     kExpiryMargin before Expires (or kDefaultUrlTtl without one); concurrent misses for the same
//     file wait for one HEAD instead of each sending their own.
//  2. GET the range with `Range: bytes=a-b`. 206 must carry exactly that Content-Range with
//     total == blob.size and deliver exactly len bytes, written straight into the caller's buffer
//     (more bytes than asked abort the transfer). A 200 (Range ignored) is accepted only if its
//     length is blob.size; the wanted window is copied out and the rest discarded, aborting early
//     once it is in hand if more than kMaxDiscardBytes would remain. 401/403/400/404 or a
//     redirect from the CDN drop the cached URL and re-resolve once. Transient failures (network,
//     stalls, short bodies, 5xx, 429 with Retry-After) are retried max_retries times with backoff
//     and jitter; a retry resumes after the bytes already in place.
//
// The lifetime of a cached URL runs on an injectable clock (UrlClock; steady_clock by default):
// the wall-clock Expires is turned into a deadline on it when the URL is resolved, so a test moves
// that clock past the deadline instead of sleeping through a real expiry.
//
// Thread-safe; no lock is held during network I/O except a per-file lock while that file's URL is
// being resolved. Locks: url_mu_ (guards slots_) is taken before Slot::mu, never the reverse, and
// never held across I/O.
#pragma once

#include <chrono>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <unordered_map>

#include "common/thread_pool.h"
#include "fetch/fetch_options.h"
#include "fetch/http_client.h"
#include "fetch/range_source.h"

namespace modelfs {

class HttpRangeSource : public RangeSource {
 public:
  // The clock a resolved URL's lifetime runs on: a URL resolved at t is used until t + (its
  // Expires, read against the wall clock at t) - kExpiryMargin, or t + kDefaultUrlTtl. Null:
  // std::chrono::steady_clock. Tests pass one they move forward, so that a URL expires without a
  // sleep (as MirrorSet::CoolDownClock does for the cool-downs). Retries and rate limits keep
  // steady_clock.
  using UrlClock = std::function<std::chrono::steady_clock::time_point()>;

  explicit HttpRangeSource(FetchOptions opts, UrlClock url_clock = nullptr);
  // Shares connections and counters with other users of `client` (e.g. an HttpHubApi).
  explicit HttpRangeSource(std::shared_ptr<http::HttpClient> client, UrlClock url_clock = nullptr);
  ~HttpRangeSource() override;
  HttpRangeSource(const HttpRangeSource&) = delete;
  HttpRangeSource& operator=(const HttpRangeSource&) = delete;

  Status ReadAt(const BlobRef& blob, uint64_t offset, size_t len, char* buf, std::string* served_by) override;
  // Streams: progress is reported as bytes land, and a retry resumes after the bytes in place.
  Status ReadAtStreaming(const BlobRef& blob, uint64_t offset, size_t len, char* buf,
                         std::string* served_by, const Progress& progress) override;
  // Resolves the file's URL in the background (one HEAD, shared with any read that needs it
  // meanwhile), so that the first read of a file just looked up or opened starts with its GET.
  void Prepare(const BlobRef& blob) override;

  const std::string& Endpoint() const { return client_->options().endpoint; }
  FetchStats Stats() const { return client_->Stats(); }
  const std::shared_ptr<http::HttpClient>& client() const { return client_; }

  static constexpr int kMaxRedirects = 5;
  // Re-resolve this long before a signed URL's Expires, so a read started just before expiry does
  // not reach the CDN after it. 30 s is far above any one ranged GET's normal duration.
  static constexpr std::chrono::seconds kExpiryMargin{30};
  // Lifetime of a resolved URL with no Expires (a mirror serving bytes itself, resolve-cache).
  static constexpr std::chrono::seconds kDefaultUrlTtl{600};
  // Longest a signed URL is kept, whatever its Expires says (a day).
  static constexpr std::chrono::seconds kMaxUrlTtl{24 * 3600};
  // A 200 answer to a Range request: past our window, drain at most this much to keep the
  // connection reusable; beyond it, close the connection instead. 1 MiB ~ one RTT of bandwidth.
  static constexpr uint64_t kMaxDiscardBytes = 1u << 20;
  // Bytes of a non-2xx body read before the transfer is cut (error bodies are small XML/JSON).
  static constexpr uint64_t kMaxErrorBodyBytes = 64u << 10;
  // Resolved URLs kept; past this, expired entries are swept on insert.
  static constexpr size_t kMaxCachedUrls = 100000;
  // Background resolutions (Prepare): threads, and hints queued at most (more are dropped).
  static constexpr size_t kPrepareThreads = 4;
  static constexpr size_t kMaxQueuedPrepares = 256;

 private:
  struct Resolved {
    std::string url;         // where to GET the bytes (may carry a signed query: never log it)
    bool send_auth = false;  // same origin as the endpoint
    std::string served_by;   // host:port of url
    std::chrono::steady_clock::time_point valid_until;
  };
  struct Slot {
    std::mutex mu;  // guards value; held while this file's URL is resolved
    std::optional<Resolved> value;
  };
  struct Attempt;  // outcome of one resolution or GET (defined in the .cc)

  std::shared_ptr<Slot> GetSlot(const std::string& key);
  // Cached URL for the blob, resolving it if missing/expired (or if `force`).
  Attempt Resolve(const BlobRef& blob, bool force, Resolved* out);
  Attempt ResolveUncached(const BlobRef& blob, Resolved* out);
  // GETs [offset + *done, offset + len) into buf + *done, advancing *done as bytes land.
  Attempt FetchRange(const Resolved& where, const BlobRef& blob, uint64_t offset, size_t len, char* buf,
                     size_t* done, const Progress& progress);
  void Invalidate(const BlobRef& blob, const std::string& url);
  // Now on the URL clock.
  std::chrono::steady_clock::time_point UrlNow() const {
    return url_clock_ ? url_clock_() : std::chrono::steady_clock::now();
  }

  std::shared_ptr<http::HttpClient> client_;
  const UrlClock url_clock_;
  std::mutex url_mu_;  // guards slots_
  std::unordered_map<std::string, std::shared_ptr<Slot>> slots_;
  std::unique_ptr<ThreadPool> prepare_pool_;  // last: its tasks use the members above
};

}  // namespace modelfs
