#include "fetch/http_client.h"

#include <algorithm>
#include <cctype>
#include <chrono>
#include <cstring>
#include <deque>
#include <random>
#include <thread>

#include "common/log.h"
#include "fetch/curl_pool.h"
#include "fetch/protocol.h"

namespace modelfs::http {
namespace {

// Idle easy handles kept for reuse. Each holds its own keep-alive connections, so this bounds idle
// sockets per HttpClient (one per mirror); 64 covers the threads that call one at once with the
// default options: the cache's prefetch and demand pools (--fetch-threads, 16 each), the URL
// resolutions in the background (HttpRangeSource::kPrepareThreads, 4) and lookups' hub calls.
constexpr size_t kMaxIdleHandles = 64;
// libcurl receive buffer: 512 KiB (default 16 KiB). Fewer, larger write callbacks per 4 MiB range;
// measurable on loopback, where per-callback overhead dominates.
constexpr long kReceiveBufferBytes = 512 * 1024;
// TCP keep-alive probes on idle pooled connections: first after 30 s idle, then every 15 s.
constexpr long kKeepIdleS = 30;
constexpr long kKeepIntervalS = 15;

// State of one transfer, reachable from libcurl's callbacks.
struct Transfer {
  BodySink* sink = nullptr;
  Response* resp = nullptr;
  // Stall detector: (time, bytes received) samples at least kStallSampleSpacing apart, covering the
  // trailing window plus one older sample (the reference point).
  std::chrono::steady_clock::duration stall_window{};
  uint64_t stall_min_bytes = 0;  // bytes the trailing window must move
  std::deque<std::pair<std::chrono::steady_clock::time_point, uint64_t>> samples;
  long status_line = 0;  // status of the response whose headers are being read
  bool headers_done = false;
};

std::string Trimmed(const char* p, size_t n) {
  while (n > 0 && (p[n - 1] == '\r' || p[n - 1] == '\n' || p[n - 1] == ' ' || p[n - 1] == '\t')) --n;
  size_t i = 0;
  while (i < n && (p[i] == ' ' || p[i] == '\t')) ++i;
  return std::string(p + i, n - i);
}

size_t HeaderCallback(char* data, size_t size, size_t nitems, void* userdata) {
  auto* t = static_cast<Transfer*>(userdata);
  size_t n = size * nitems;
  std::string line = Trimmed(data, n);
  if (line.rfind("HTTP/", 0) == 0) {
    // A new response (after a 1xx, or the first): start over.
    t->resp->headers.clear();
    t->headers_done = false;
    t->status_line = 0;
    size_t sp = line.find(' ');
    if (sp != std::string::npos && sp + 4 <= line.size()) {
      long code = 0;
      for (size_t i = sp + 1; i < sp + 4; ++i) {
        if (!std::isdigit(static_cast<unsigned char>(line[i]))) return 0;
        code = code * 10 + (line[i] - '0');
      }
      t->status_line = code;
    }
    return n;
  }
  if (line.empty()) {
    if (t->status_line >= 200 && !t->headers_done) {
      t->headers_done = true;
      t->resp->status = t->status_line;
      if (t->sink && !t->sink->OnHeaders(t->status_line, t->resp->headers)) {
        t->resp->aborted_by_sink = true;
        return 0;
      }
    }
    return n;
  }
  size_t colon = line.find(':');
  if (colon == std::string::npos) return n;  // obs-fold or junk: ignore
  Header h;
  h.name = line.substr(0, colon);
  for (char& c : h.name) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  h.value = Trimmed(line.data() + colon + 1, line.size() - colon - 1);
  t->resp->headers.push_back(std::move(h));
  return n;
}

size_t WriteCallback(char* data, size_t size, size_t nmemb, void* userdata) {
  auto* t = static_cast<Transfer*>(userdata);
  size_t n = size * nmemb;
  t->resp->body_bytes += n;
  if (t->sink && !t->sink->OnData(data, n)) {
    t->resp->aborted_by_sink = true;
    return CURL_WRITEFUNC_ERROR;
  }
  return n;
}

// Spacing of stall-detector samples: bounds the sample deque to ~10 per second of window while
// keeping detection within ~0.1 s of libcurl's (>= 1 Hz) progress calls.
constexpr auto kStallSampleSpacing = std::chrono::milliseconds(100);

// Precise stall detector: aborts when fewer than stall_min_bytes arrived during the trailing
// stall window. libcurl's LOW_SPEED_* (kept as a backstop) averages speed over a ~5 s window, so
// after a burst it notices a dead peer only seconds late. Called by libcurl at least once a second.
int XferInfoCallback(void* userdata, curl_off_t, curl_off_t dlnow, curl_off_t, curl_off_t) {
  auto* t = static_cast<Transfer*>(userdata);
  auto now = std::chrono::steady_clock::now();
  uint64_t bytes = static_cast<uint64_t>(dlnow);
  if (t->samples.empty() || now - t->samples.back().first >= kStallSampleSpacing)
    t->samples.emplace_back(now, bytes);
  // Keep exactly one sample at or before now - window: the reference point.
  while (t->samples.size() >= 2 && now - t->samples[1].first >= t->stall_window) t->samples.pop_front();
  const auto& ref = t->samples.front();
  if (now - ref.first >= t->stall_window && bytes - ref.second < t->stall_min_bytes) {
    t->resp->stalled = true;
    return 1;  // abort: CURLE_ABORTED_BY_CALLBACK
  }
  return 0;
}

}  // namespace

bool StringSink::OnHeaders(long status, const std::vector<Header>& headers) {
  for (const Header& h : headers) {
    if (h.name == "content-length" && h.value.size() < 20 && strtoull(h.value.c_str(), nullptr, 10) > max_) {
      truncated = true;
      return false;
    }
  }
  return true;
}

bool StringSink::OnData(const char* data, size_t n) {
  if (body.size() + n > max_) {
    truncated = true;
    return false;
  }
  body.append(data, n);
  return true;
}

const std::string* Response::Find(const std::string& name) const {
  for (auto it = headers.rbegin(); it != headers.rend(); ++it)
    if (it->name == name) return &it->value;
  return nullptr;
}

HttpClient::HttpClient(FetchOptions opts)
    : opts_(std::move(opts)), pool_(std::make_unique<EasyPool>(kMaxIdleHandles)) {
  while (!opts_.endpoint.empty() && opts_.endpoint.back() == '/') opts_.endpoint.pop_back();
  if (!opts_.token.empty()) auth_header_ = "Authorization: Bearer " + opts_.token;
}

HttpClient::~HttpClient() = default;

Response HttpClient::Perform(const Request& req, BodySink* sink) {
  Response resp;
  Transfer t;
  t.sink = sink;
  t.resp = &resp;
  std::unique_ptr<EasyPool::Lease> lease = pool_->Acquire();
  CURL* h = lease->get();
  curl_easy_reset(h);
  char errbuf[CURL_ERROR_SIZE] = {0};

  curl_easy_setopt(h, CURLOPT_SHARE, pool_->share());
  curl_easy_setopt(h, CURLOPT_URL, req.url.c_str());
  curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
  curl_easy_setopt(h, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
  curl_easy_setopt(h, CURLOPT_FOLLOWLOCATION, 0L);
  curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, opts_.connect_timeout_ms);
  curl_easy_setopt(h, CURLOPT_LOW_SPEED_LIMIT, opts_.stall_min_bytes_per_s);
  curl_easy_setopt(h, CURLOPT_LOW_SPEED_TIME, opts_.stall_timeout_s);
  curl_easy_setopt(h, CURLOPT_TIMEOUT, opts_.request_timeout_s);
  curl_easy_setopt(h, CURLOPT_TCP_KEEPALIVE, 1L);
  curl_easy_setopt(h, CURLOPT_TCP_KEEPIDLE, kKeepIdleS);
  curl_easy_setopt(h, CURLOPT_TCP_KEEPINTVL, kKeepIntervalS);
  curl_easy_setopt(h, CURLOPT_BUFFERSIZE, kReceiveBufferBytes);
  // No Nagle: a request must leave at once, every chunk already costs one round trip.
  curl_easy_setopt(h, CURLOPT_TCP_NODELAY, 1L);
  // HTTP/2 where a TLS server offers it (ALPN), HTTP/1.1 otherwise. Each pooled handle keeps its
  // own connections, so parallel chunks still travel on parallel TCP connections rather than as
  // streams of one: mirrors and CDNs cap the rate per connection, and one congestion window would
  // carry the whole file (bench/, far link with 8 MiB/s per connection: the 125 chunk GETs of a
  // 512 MiB shard ran on 16 connections, 7-10 GETs each).
  curl_easy_setopt(h, CURLOPT_HTTP_VERSION, static_cast<long>(CURL_HTTP_VERSION_2TLS));
  curl_easy_setopt(h, CURLOPT_USERAGENT, opts_.user_agent.c_str());
  // TLS: peer and host verification stay on (libcurl defaults, restated so no reuse of a reset
  // handle can lose them); a minimum version; an optional CA bundle.
  curl_easy_setopt(h, CURLOPT_SSL_VERIFYPEER, 1L);
  curl_easy_setopt(h, CURLOPT_SSL_VERIFYHOST, 2L);
  curl_easy_setopt(h, CURLOPT_SSLVERSION,
                   opts_.tls_min_version == "1.3" ? CURL_SSLVERSION_TLSv1_3 : CURL_SSLVERSION_TLSv1_2);
  if (!opts_.ca_file.empty()) curl_easy_setopt(h, CURLOPT_CAINFO, opts_.ca_file.c_str());
  curl_easy_setopt(h, CURLOPT_ERRORBUFFER, errbuf);
  curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, &HeaderCallback);
  curl_easy_setopt(h, CURLOPT_HEADERDATA, &t);
  curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, &WriteCallback);
  curl_easy_setopt(h, CURLOPT_WRITEDATA, &t);
  if (req.head) curl_easy_setopt(h, CURLOPT_NOBODY, 1L);
  if (opts_.stall_timeout_s > 0) {
    t.stall_window = std::chrono::seconds(opts_.stall_timeout_s);
    t.stall_min_bytes = static_cast<uint64_t>(std::max(0L, opts_.stall_min_bytes_per_s)) *
                        static_cast<uint64_t>(opts_.stall_timeout_s);
    t.samples.emplace_back(std::chrono::steady_clock::now(), 0);
    curl_easy_setopt(h, CURLOPT_XFERINFOFUNCTION, &XferInfoCallback);
    curl_easy_setopt(h, CURLOPT_XFERINFODATA, &t);
    curl_easy_setopt(h, CURLOPT_NOPROGRESS, 0L);
  }

  struct curl_slist* hdrs = nullptr;
  // No compression ever: Content-Length and Content-Range must describe the raw bytes
  // (a CDN such as CloudFront ignores Range when gzip is offered).
  hdrs = curl_slist_append(hdrs, "Accept-Encoding: identity");
  if (req.send_auth && !auth_header_.empty()) hdrs = curl_slist_append(hdrs, auth_header_.c_str());
  std::string range;
  if (req.range) {
    range = "Range: bytes=" + std::to_string(req.range->first) + "-" + std::to_string(req.range->second);
    hdrs = curl_slist_append(hdrs, range.c_str());
  }
  curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdrs);

  requests_.fetch_add(1, std::memory_order_relaxed);
  CURLcode rc = curl_easy_perform(h);
  curl_slist_free_all(hdrs);
  // Point the handle away from stack data before it goes back to the pool.
  curl_easy_setopt(h, CURLOPT_ERRORBUFFER, nullptr);
  bytes_.fetch_add(resp.body_bytes, std::memory_order_relaxed);

  long code = 0;
  curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &code);
  curl_off_t sent_us = 0, first_us = 0;
  if (curl_easy_getinfo(h, CURLINFO_PRETRANSFER_TIME_T, &sent_us) == CURLE_OK &&
      curl_easy_getinfo(h, CURLINFO_STARTTRANSFER_TIME_T, &first_us) == CURLE_OK && first_us > sent_us) {
    resp.first_byte_ms = static_cast<double>(first_us - sent_us) / 1000.0;
  }
  if (resp.status == 0) resp.status = code;
  if (resp.status == 429) {
    // Remember how long the server asked us to stay away (MirrorSet moves load elsewhere
    // meanwhile). Without a usable header, one backoff base's worth of silence is assumed.
    long ms = protocol::ParseRetryDelayMs(resp.Get("retry-after"), resp.Get("ratelimit"), kMaxRateLimitWaitMs)
                  .value_or(std::max(1000L, opts_.retry_base_ms));
    int64_t until = std::chrono::duration_cast<std::chrono::milliseconds>(
                        std::chrono::steady_clock::now().time_since_epoch()).count() + ms;
    int64_t prev = rate_limited_until_ms_.load(std::memory_order_relaxed);
    while (prev < until && !rate_limited_until_ms_.compare_exchange_weak(prev, until)) {
    }
  }
  if (rc == CURLE_OK) {
    resp.transport_ok = true;
  } else {
    if (resp.stalled) {
      resp.error = "stalled: fewer than " + std::to_string(opts_.stall_min_bytes_per_s) + " bytes/s for " +
                   std::to_string(opts_.stall_timeout_s) + " s";
    } else {
      resp.error = std::string(curl_easy_strerror(rc)) + (errbuf[0] ? std::string(": ") + errbuf : "");
    }
    // libcurl's messages may quote the URL; keep any query string out of logs and statuses.
    if (size_t q = resp.error.find('?'); q != std::string::npos) resp.error.resize(q);
    // An aborted or failed transfer may leave the connection half-read; libcurl closes it, but a
    // fresh handle is the cheap, certain way to start clean.
    lease->Discard();
  }
  return resp;
}

FetchStats HttpClient::Stats() const {
  FetchStats s;
  s.requests = requests_.load(std::memory_order_relaxed);
  s.retries = retries_.load(std::memory_order_relaxed);
  s.bytes_received = bytes_.load(std::memory_order_relaxed);
  s.resolves = resolves_.load(std::memory_order_relaxed);
  s.failures = failures_.load(std::memory_order_relaxed);
  return s;
}

void HttpClient::Backoff(int attempt, std::optional<long> server_delay_ms) const {
  long base = std::max(0L, opts_.retry_base_ms);
  long delay = base;
  for (int i = 1; i < attempt && delay < kMaxBackoffMs; ++i) delay *= 2;
  delay = std::min(delay, kMaxBackoffMs);
  thread_local std::mt19937_64 rng{std::random_device{}()};
  if (base > 0) delay += static_cast<long>(rng() % static_cast<uint64_t>(base));
  if (server_delay_ms) delay = std::max(delay, std::min(*server_delay_ms, kMaxBackoffMs));
  std::this_thread::sleep_for(std::chrono::milliseconds(delay));
}

bool IsRetryableStatus(long status) { return status == 408 || status == 429 || status >= 500; }

Status MapHubError(const Response& resp, bool token_sent, const std::string& what) {
  std::string code = resp.Get("x-error-code");
  std::string msg = resp.Get("x-error-message");
  // Server text goes into our messages: bound it and drop control characters.
  if (msg.size() > 200) msg.resize(200);
  for (char& c : msg)
    if (static_cast<unsigned char>(c) < 0x20) c = ' ';
  std::string detail = what + ": HTTP " + std::to_string(resp.status) + (code.empty() ? "" : " " + code) +
                       (msg.empty() ? "" : " (" + msg + ")");
  long s = resp.status;
  if (s == 404) return Status::NotFound(detail);
  if (s == 401) {
    if (token_sent) return Status::PermissionDenied(detail + "; the token lacks access or is invalid");
    if (code == "GatedRepo") return Status::PermissionDenied(detail + "; gated repo, a token is needed");
    // The hub answers an anonymous request for a private repo and for a missing one with the same
    // bare 401, so it means "private or does not exist". Users (and huggingface_hub's
    // RepositoryNotFoundError) read that as "not found": ENOENT at the mount, with the message
    // saying a token may be needed.
    return Status::NotFound(detail + "; repo does not exist, or is private and a token is needed");
  }
  if (s == 403) return Status::PermissionDenied(detail);
  if (IsRetryableStatus(s)) return Status::Unavailable(detail);
  return Status::InvalidArgument(detail);
}

}  // namespace modelfs::http
