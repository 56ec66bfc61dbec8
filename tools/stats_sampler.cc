// SampleCache, SampleMirrors, FuseErrorsJson: see stats_sampler.h. No locks of their own.
#include "tools/stats_sampler.h"

#include <string>

#include "cache/disk_blob_store.h"
#include "fetch/mirror_set.h"
#include "fetch/protocol.h"

namespace modelfs::cli {
namespace {

// A mirror's label in metrics: host:port of its endpoint (bounded by the configuration).
std::string MirrorLabel(const std::string& endpoint) {
  Result<protocol::Url> u = protocol::ParseUrl(endpoint);
  return u.ok() ? u->HostPort() : endpoint;
}

}  // namespace

nlohmann::json SampleCache(const CacheStats& c, MetricsRegistry* reg) {
  MetricsRegistry& r = *reg;
  r.Value(Metric::kCacheHitBytes)->Set(static_cast<double>(c.hit_bytes));
  r.Value(Metric::kCacheMissBytes)->Set(static_cast<double>(c.miss_bytes));
  r.Value(Metric::kCacheFetchedBytes)->Set(static_cast<double>(c.fetched_bytes));
  r.Value(Metric::kCacheEvictedBytes)->Set(static_cast<double>(c.evicted_bytes));
  r.Value(Metric::kCacheUncachedBytes)->Set(static_cast<double>(c.uncached_bytes));
  r.Value(Metric::kCacheCorruptBlocks)->Set(static_cast<double>(c.corrupt_blocks));
  r.Value(Metric::kCacheUsedBytes)->Set(static_cast<double>(c.used_bytes));
  r.Value(Metric::kCacheQuotaBytes)->Set(static_cast<double>(c.quota_bytes));
  r.Value(Metric::kVerifyPasses)->Set(static_cast<double>(c.verified));
  r.Value(Metric::kVerifyFailures)->Set(static_cast<double>(c.verify_failures));
  r.Value(Metric::kCachePeakUsedBytes)->Set(static_cast<double>(c.peak_used_bytes));
  r.Value(Metric::kCacheRefusedBytes)->Set(static_cast<double>(c.refused_bytes));
  r.Value(Metric::kCacheDistrustedRefetches)->Set(static_cast<double>(c.distrusted_refetches));
  r.Value(Metric::kCacheHashedBytes)->Set(static_cast<double>(c.hashed_bytes));
  r.Value(Metric::kCacheSplicedBytes)->Set(static_cast<double>(c.spliced_bytes));
  r.Value(Metric::kCacheChunkFetches)->Set(static_cast<double>(c.fetches));
  return {{"hit_bytes", c.hit_bytes},   {"miss_bytes", c.miss_bytes}, {"used_bytes", c.used_bytes},
          {"quota_bytes", c.quota_bytes}, {"verified", c.verified}, {"verify_failures", c.verify_failures},
          {"peak_used_bytes", c.peak_used_bytes}, {"refused_bytes", c.refused_bytes},
          {"distrusted_refetches", c.distrusted_refetches}, {"overhead_bytes", c.overhead_bytes},
          {"hashed_bytes", c.hashed_bytes}, {"spliced_bytes", c.spliced_bytes}};
}

MirrorsSample SampleMirrors(const MirrorSetStats& st, const std::vector<TransferInfo>& transfers,
                            MetricsRegistry* reg) {
  MetricsRegistry& r = *reg;
  MirrorsSample out;
  const FetchStats total = st.Total();
  for (const MirrorStats& m : st.mirrors) {
    const std::string label = MirrorLabel(m.endpoint);
    r.Value(Metric::kFetchBytes, {label})->Set(static_cast<double>(m.http.bytes_received));
    r.Value(Metric::kHttpRequests, {label})->Set(static_cast<double>(m.http.requests));
    r.Value(Metric::kFetchCalls, {label, "ok"})->Set(static_cast<double>(m.calls_ok));
    r.Value(Metric::kFetchCalls, {label, "failed"})->Set(static_cast<double>(m.calls_failed));
    r.Value(Metric::kMirrorHealthy, {label})->Set(m.healthy ? 1 : 0);
    r.Value(Metric::kMirrorLatency, {label})->Set(m.latency_ms / 1000.0);
    r.Value(Metric::kMirrorThroughput, {label})->Set(m.throughput_Bps);
    r.Value(Metric::kMirrorReadBytes, {label})->Set(static_cast<double>(m.bytes_read));
    r.Value(Metric::kFetchResolves, {label})->Set(static_cast<double>(m.http.resolves));
    out.ok += m.calls_ok;
    out.failed += m.calls_failed;
    out.mirrors.push_back({{"mirror", label}, {"healthy", m.healthy}, {"latency_ms", m.latency_ms},
                           {"throughput_Bps", m.throughput_Bps}, {"bytes", m.http.bytes_received},
                           {"read_bytes", m.bytes_read}, {"bad_files", m.bad_files},
                           {"calls_ok", m.calls_ok}, {"calls_failed", m.calls_failed}});
  }
  out.failed += total.retries;  // a retried attempt failed, even if the call then succeeded
  out.bytes = total.bytes_received;
  r.Value(Metric::kFetchFailures, {"http"})->Set(static_cast<double>(total.failures));
  r.Value(Metric::kFetchFailures, {"rate_limited"})->Set(static_cast<double>(st.rate_limited));
  r.Value(Metric::kFetchFailures, {"bad_source"})->Set(static_cast<double>(st.bad_source_reports));
  r.Value(Metric::kFetchRetries)->Set(static_cast<double>(total.retries));
  r.Value(Metric::kMirrorFailovers)->Set(static_cast<double>(st.failovers));
  for (const TransferInfo& t : transfers) {
    out.reads_in_flight += t.reads_in_flight;
    out.bytes_in_flight += static_cast<double>(t.bytes_in_flight);
    out.transfers.push_back({{"file", t.file}, {"mirror", t.mirror}, {"bytes", t.bytes_done},
                             {"bytes_in_flight", t.bytes_in_flight}, {"reads_in_flight", t.reads_in_flight},
                             {"failed_reads", t.failed_reads}, {"elapsed_s", t.elapsed_s}, {"idle_s", t.idle_s},
                             {"speed_Bps", t.speed_Bps}});
  }
  return out;
}

nlohmann::json FuseErrorsJson(const MetricsRegistry& r) {
  nlohmann::json errors = nlohmann::json::array();
  for (const auto& [labels, count] : r.Values(Metric::kFuseErrors))
    errors.push_back({{"op", labels[0]}, {"errno", labels[1]}, {"count", static_cast<uint64_t>(count)}});
  return errors;
}

}  // namespace modelfs::cli
