// HttpClient: one blocking HTTP request at a time per calling thread, over a shared pool of libcurl
// handles (fetch/curl_pool.h). It applies the transport rules every fetch/ request follows and
// nothing else: no automatic redirects (callers decide which hops keep the token), http/https only,
// connect timeout, stall detector, hard ceiling, TCP keep-alive, no Nagle, HTTP/2 only where a TLS
// server offers it (one connection per pooled handle: no multiplexing of parallel ranges onto one
// TCP connection), Accept-Encoding: identity, and the Authorization header only when the caller
// says so. Status codes are returned, not interpreted;
// http_hub_api.cc and http_range_source.cc give them meaning. Header-free of libcurl.
//
// Thread-safe: any number of threads may call Perform concurrently. Share one HttpClient between
// HttpHubApi and HttpRangeSource to share connections and counters.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "common/status.h"
#include "fetch/fetch_options.h"

namespace modelfs {

// Counters for metrics (a snapshot; all monotonically increasing since construction).
struct FetchStats {
  uint64_t requests = 0;        // HTTP requests sent (HEAD and GET, every hop and retry)
  uint64_t retries = 0;         // attempts repeated after a transient failure
  uint64_t bytes_received = 0;  // body bytes received (all responses)
  uint64_t resolves = 0;        // /resolve/ redirect resolutions (URL cache misses)
  uint64_t failures = 0;        // calls that returned a non-OK Status to the caller
};

namespace http {

struct Header {
  std::string name;   // lowercase
  std::string value;  // trimmed
};

struct Request {
  bool head = false;       // HEAD instead of GET
  std::string url;         // absolute, already percent-encoded
  bool send_auth = false;  // add "Authorization: Bearer <token>" (ignored if no token)
  // Inclusive byte range for "Range: bytes=first-last", if any.
  std::optional<std::pair<uint64_t, uint64_t>> range;
};

// Receives one response's body as it arrives. Returning false from a callback aborts the transfer
// (Perform then reports aborted_by_sink).
class BodySink {
 public:
  virtual ~BodySink() = default;
  // Called once the final (non-1xx) response's headers are complete, before any body byte.
  virtual bool OnHeaders(long status, const std::vector<Header>& headers) { return true; }
  virtual bool OnData(const char* data, size_t n) = 0;
};

// Collects the body into a string, aborting past max_bytes (truncated then holds true).
class StringSink : public BodySink {
 public:
  explicit StringSink(size_t max_bytes) : max_(max_bytes) {}
  bool OnHeaders(long status,
                 const std::vector<Header>& headers) override;  // refuses a too-long Content-Length
  bool OnData(const char* data, size_t n) override;
  std::string body;
  bool truncated = false;

 private:
  size_t max_;
};

struct Response {
  bool transport_ok = false;     // the exchange completed (any status)
  bool aborted_by_sink = false;  // a BodySink callback returned false
  bool stalled = false;          // the stall detector fired
  std::string error;             // libcurl's message when !transport_ok (never holds the URL query)
  long status = 0;               // HTTP status of the final response, 0 if none
  std::vector<Header> headers;
  uint64_t body_bytes = 0;
  // From the request sent to the response's first byte: a round trip and the server's time,
  // without the connection's setup (0 if no response came).
  double first_byte_ms = 0;

  // Last value of a header (name lowercase), or nullptr.
  const std::string* Find(const std::string& name) const;
  std::string Get(const std::string& name) const {
    const std::string* v = Find(name);
    return v ? *v : std::string();
  }
};

class EasyPool;  // fetch/curl_pool.h

class HttpClient {
 public:
  explicit HttpClient(FetchOptions opts);
  ~HttpClient();
  HttpClient(const HttpClient&) = delete;
  HttpClient& operator=(const HttpClient&) = delete;

  // Sends one request and blocks until it completes, fails or times out. The body goes to `sink`
  // (may be null: the body is discarded). Never follows redirects.
  Response Perform(const Request& req, BodySink* sink);

  const FetchOptions& options() const { return opts_; }
  bool has_token() const { return !opts_.token.empty(); }

  // Counters. Count* are for the request-level logic above this class.
  FetchStats Stats() const;
  void CountRetry() { retries_.fetch_add(1, std::memory_order_relaxed); }
  void CountResolve() { resolves_.fetch_add(1, std::memory_order_relaxed); }
  void CountFailure() { failures_.fetch_add(1, std::memory_order_relaxed); }

  // Sleeps before retry `attempt` (1-based): retry_base_ms * 2^(attempt-1), capped at
  // kMaxBackoffMs, plus up to retry_base_ms of jitter; at least `server_delay_ms` if given.
  void Backoff(int attempt, std::optional<long> server_delay_ms) const;

  // Until when (steady_clock) the server last asked us, with a 429, to stay away; the epoch if never.
  std::chrono::steady_clock::time_point RateLimitedUntil() const {
    return std::chrono::steady_clock::time_point(
        std::chrono::milliseconds(rate_limited_until_ms_.load(std::memory_order_relaxed)));
  }
  // Longest rate-limit pause remembered from one 429 (RateLimit windows are minutes at most).
  static constexpr long kMaxRateLimitWaitMs = 300000;

  // Largest sleep between two attempts (also the cap for Retry-After): 10 s. Longer waits would
  // hold a FUSE worker hostage; the caller sees Unavailable and may try again later.
  static constexpr long kMaxBackoffMs = 10000;

 private:
  FetchOptions opts_;
  std::string auth_header_;  // "Authorization: Bearer ..." (never logged)
  std::unique_ptr<http::EasyPool> pool_;
  std::atomic<int64_t> rate_limited_until_ms_{0};  // steady_clock ms; see RateLimitedUntil
  std::atomic<uint64_t> requests_{0}, retries_{0}, bytes_{0}, resolves_{0}, failures_{0};
};

// ---- Helpers shared by the hub API and the range source.

// True for statuses worth retrying: 408, 429, 500, 502, 503, 504 (and any other 5xx).
bool IsRetryableStatus(long status);

// Maps a hub error response (status >= 400) to a Status, as the hub's own clients read them:
// 404 (+RepoNotFound/RevisionNotFound/EntryNotFound) -> NotFound; 403, a 401 to a request with
// the token, and a 401 GatedRepo -> PermissionDenied, with a message that says why; a bare 401
// to an anonymous request -> NotFound (the hub answers a private repo and a missing one alike:
// "does not exist, or is private and a token is needed"); other 4xx -> InvalidArgument; 5xx,
// 408 and 429 -> Unavailable. `what` names the request for the message (no query strings).
Status MapHubError(const Response& resp, bool token_sent, const std::string& what);

}  // namespace http
}  // namespace modelfs
