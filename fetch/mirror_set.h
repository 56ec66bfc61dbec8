// MirrorSet: several hub endpoints (a national mirror, a company mirror, the origin) behind one
// HubApi and one RangeSource.
//
// Design. Each mirror has its own HttpClient (connections, counters, token rules: the token goes
// to each configured endpoint host, never to a CDN one of them redirects to), HttpHubApi and
// HttpRangeSource. Every call picks an order of mirrors and tries them in turn:
//  - Health: a mirror whose call failed with Unavailable (network, stalls, 5xx after its own quick
//    retry) is "down" for `mirror_retry_after_s` (CernVM-FS's rule: a failed server is retried
//    after a cool-down, 5 min by default). A 429 makes it "down" for exactly the time the server
//    asked (Retry-After / RateLimit, read by HttpClient). Down mirrors are tried only once every
//    healthy one failed for this call, so the whole set blinking never fails a read by itself.
//  - Measurement: each call's wall time feeds moving averages (EWMA, alpha kEwmaAlpha) of latency
//    (API calls and reads under kSmallReadBytes) and throughput (larger reads). The expected time
//    of a call is latency + bytes / throughput, at least 1 ms; a mirror not measured yet (Warm
//    seeds its latency at mount) counts as that floor, so it is tried early, in configuration
//    order. The cost is expected time x (1 + calls in flight on that mirror), which spreads
//    parallel range requests over the healthy mirrors in proportion to their speed.
//    With EndpointPolicy::kOrdered the cost is the configuration index instead: every call goes
//    to the first healthy mirror (a site cache), the others only take calls it cannot serve.
//  - Consistency: reads are commit-addressed (/resolve/{commit}/...), so a mirror that does not
//    serve the pinned commit answers 404 and is skipped for that call; it can never serve bytes of
//    another commit. A mirror whose endpoint reports a content hash other than the listing's (see
//    HttpRangeSource) or that breaks the protocol for a file, or that ReportBadSource names after
//    a SHA-256 failure, is marked bad for that file for the cool-down; the file is read from the
//    others. If every mirror is bad for a file, all are tried again (the cache verifies anyway and
//    will never keep bytes that fail), rather than making the file unreadable.
//  - Failover is per call (a ReadAt is one chunk), so a file moves to another mirror mid-way
//    without the reader noticing: it only sees the chunk arrive a little later.
// With one endpoint, MirrorSet is a pass-through to that endpoint with the configured retries.
//
// Live transfers: every ReadAt is registered while it runs in a TransferRegistry
// (fetch/transfer_registry.h), so `modelfs status` can show per file the bytes so far, the speed
// and the mirror serving it (Transfers()).
//
// Thread-safe. mu_ guards the health and measurement fields; the registry's own lock is a leaf,
// taken at the start of each chunk read, on each mirror it tries, and at its end. Neither is held
// during I/O.
#pragma once

#include <atomic>
#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "fetch/fetch_options.h"
#include "fetch/http_client.h"
#include "fetch/http_hub_api.h"
#include "fetch/http_range_source.h"
#include "fetch/hub_api.h"
#include "fetch/range_source.h"
#include "fetch/transfer_registry.h"

namespace modelfs {

struct MirrorStats {
  std::string endpoint;
  bool healthy = true;         // not in a cool-down or rate-limit pause
  double latency_ms = 0;       // moving average, 0 = not measured yet
  double throughput_Bps = 0;   // bytes/s, moving average, 0 = not measured yet
  uint64_t calls_ok = 0;       // API calls and reads that succeeded here
  uint64_t calls_failed = 0;   // ... that failed here (each may have failed over)
  uint64_t bytes_read = 0;     // ReadAt bytes served
  uint64_t bad_files = 0;      // files currently marked bad on this mirror
  FetchStats http;             // this mirror's HttpClient counters
};

struct MirrorSetStats {
  uint64_t failovers = 0;           // a call moved to another mirror after a failure
  uint64_t bad_source_reports = 0;  // ReportBadSource calls that named a mirror
  uint64_t rate_limited = 0;        // calls skipped or failed because a mirror asked us to wait
  std::vector<MirrorStats> mirrors;
  FetchStats Total() const;         // sum of the mirrors' HTTP counters
};

class MirrorSet : public HubApi, public RangeSource {
 public:
  // The clock the cool-downs run on: a mirror marked down (--mirror-retry) and a mirror marked
  // bad for a file. Null: std::chrono::steady_clock. Tests pass one they move forward, so that a
  // cool-down passes without a sleep. (Latencies, rate limits and transfers use steady_clock; the
  // transfer registry is tested with its own clock, tests/fetch/transfer_registry_test.cc.)
  using CoolDownClock = std::function<std::chrono::steady_clock::time_point()>;

  // Endpoints: opts.endpoints, or {opts.endpoint} if that is empty; duplicates are dropped.
  explicit MirrorSet(const FetchOptions& opts, CoolDownClock cool_down_clock = nullptr);
  MirrorSet(const MirrorSet&) = delete;
  MirrorSet& operator=(const MirrorSet&) = delete;

  // HubApi: the first mirror (best first) that answers wins. NotFound only if every mirror that
  // answered said so; PermissionDenied (logged with what to do) if one refused and none served.
  Result<std::string> ResolveRevision(const RepoId& repo, const std::string& rev) override;
  Result<std::vector<FileEntry>> ListTree(const RepoId& repo, const std::string& commit) override;

  // RangeSource. served_by is the mirror's "host:port", followed by " via host:port" of a CDN
  // it redirected to; with one mirror it is whatever HttpRangeSource reports.
  Status ReadAt(const BlobRef& blob, uint64_t offset, size_t len, char* buf, std::string* served_by) override;
  Status ReadAtStreaming(const BlobRef& blob, uint64_t offset, size_t len, char* buf,
                         std::string* served_by, const Progress& progress) override;
  // Prepares the file on the mirror its first read would go to.
  void Prepare(const BlobRef& blob) override;
  // The lowest measured latency among healthy mirrors (where a read would go first); ordered:
  // the first healthy mirror's.
  uint64_t LatencyHintUs() const override;
  void ReportBadSource(const BlobRef& blob, const std::string& served_by) override;

  // Opens a connection to every endpoint in the background (HEAD {endpoint}/, with the token as
  // every call to an endpoint has it), so that the first lookup after a mount costs one round
  // trip instead of two or more (TCP and TLS setup), and the endpoint's round trip seeds the
  // latency that ranks the mirrors before their first call. An endpoint that does not answer is
  // logged only: the first call decides whether it is down. Returns at once; a mount calls it.
  void Warm();
  // Waits for what Warm started (each request is bounded by the connect and stall timeouts).
  void WaitWarm();
  ~MirrorSet() override;

  size_t size() const { return mirrors_.size(); }
  const std::string& endpoint(size_t i) const { return mirrors_[i]->endpoint; }
  HttpRangeSource& source(size_t i) { return *mirrors_[i]->source; }
  const std::shared_ptr<http::HttpClient>& client(size_t i) const { return mirrors_[i]->client; }
  MirrorSetStats Stats() const;
  // Files being read now, then recently finished ones; most recently active first
  // (TransferRegistry::Snapshot).
  std::vector<TransferInfo> Transfers() const { return transfers_.Snapshot(); }

  // Moving-average weight of the newest sample: 0.3 follows a change within ~5 calls without
  // letting one slow chunk swing the choice.
  static constexpr double kEwmaAlpha = 0.3;
  // Reads up to this size measure latency; larger ones measure throughput. 64 KiB moves in well
  // under a round trip on any link where the distinction matters.
  static constexpr size_t kSmallReadBytes = 64u << 10;
  // Files remembered as bad per mirror; past this, expired marks are swept.
  static constexpr size_t kMaxBadFiles = 10000;

 private:
  struct Mirror {
    std::string endpoint;
    std::string label;  // host:port of the endpoint
    std::shared_ptr<http::HttpClient> client;
    std::unique_ptr<HttpHubApi> hub;
    std::unique_ptr<HttpRangeSource> source;
    std::atomic<int> inflight{0};
    // Guarded by MirrorSet::mu_:
    std::chrono::steady_clock::time_point down_until{};
    double latency_ms = 0, throughput_Bps = 0;
    uint64_t calls_ok = 0, calls_failed = 0, bytes_read = 0;
    std::map<std::string, std::chrono::steady_clock::time_point> bad_files;  // file key -> until
  };
  // Runs one call (`fn(mirror index)`) over the mirrors in Order, failing over as the design above
  // says, for up to max_retries rounds; records each attempt's outcome and time.
  template <typename Fn>
  Status Run(const std::string& what, const std::string& file_key, uint64_t bytes, Fn&& fn);
  // Mirror indexes, best first: healthy ones by cost, then down ones by when they come back.
  // Mirrors bad for file_key come after all others. *healthy_count receives how many lead.
  std::vector<size_t> Order(uint64_t bytes, const std::string& file_key, size_t* healthy_count);
  void Record(size_t i, bool ok, uint64_t bytes, double ms, bool small);
  void MarkDown(size_t i, const Status& why);
  void MarkBadFile(size_t i, const std::string& file_key, const std::string& why);
  // Now on the cool-down clock, given steady_clock's now (which it is when no clock was passed).
  std::chrono::steady_clock::time_point CoolDownNow(std::chrono::steady_clock::time_point steady_now) const {
    return cool_down_clock_ ? cool_down_clock_() : steady_now;
  }
  FetchOptions opts_;
  const CoolDownClock cool_down_clock_;
  std::vector<std::unique_ptr<Mirror>> mirrors_;
  mutable std::mutex mu_;
  std::atomic<uint64_t> failovers_{0}, bad_reports_{0}, rate_limited_{0};
  std::mutex warm_mu_;
  std::vector<std::thread> warmers_;  // guarded by warm_mu_
  TransferRegistry transfers_;
};

}  // namespace modelfs
