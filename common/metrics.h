// Metrics: one table that declares every metric modelfs exports, a registry holding their current
// values, and a renderer to the Prometheus text exposition format (version 0.0.4).
//
// Design. The table (kMetricTable in metrics.cc, indexed by the Metric enum) is the only place a
// metric is named: its name (modelfs_ prefix, base units: _bytes, _seconds, _total for counters),
// type, help text and label names. docs/metrics.md is generated from it (`modelfs metrics --list`)
// and a test checks the two agree. Labels are bounded by construction: each label's values come
// from a fixed set (FUSE op, result, failure kind, alert name) or from the configuration (mirror).
//
// Most values are *sampled*: tools/monitor.cc copies the stats structs that the cache and fetch
// layers already keep (CacheStats, MirrorSetStats) into the registry once per interval, so the hot
// paths pay nothing for metrics. Only what nothing else counts is recorded directly, through a
// Histogram pointer resolved once (FUSE request latency: fs/fuse_adapter.cc).
//
// Thread safety. Series are created under the registry's mutex and never destroyed, so a pointer
// returned by Value() or Hist() stays valid for the registry's lifetime; updating a series is
// lock-free (relaxed atomics). Rendering takes the mutex only to walk the series list; a scrape
// may see one histogram's buckets a few observations apart from its count (Prometheus tolerates
// this; every value is individually monotonic).
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

namespace modelfs {

enum class MetricType { kCounter, kGauge, kHistogram };

// Every metric; the order of kMetricTable. Adding one = one enum value + one table row (a
// static_assert in metrics.cc keeps the two the same length) + regenerating docs/metrics.md.
enum class Metric : int {
  kFetchBytes,
  kHttpRequests,
  kFetchCalls,
  kFetchFailures,
  kFetchRetries,
  kMirrorFailovers,
  kMirrorHealthy,
  kMirrorLatency,
  kMirrorThroughput,
  kCacheHitBytes,
  kCacheMissBytes,
  kCacheFetchedBytes,
  kCacheEvictedBytes,
  kCacheUncachedBytes,
  kCacheCorruptBlocks,
  kCacheUsedBytes,
  kCacheQuotaBytes,
  kCachePeakUsedBytes,
  kCacheRefusedBytes,
  kCacheDistrustedRefetches,
  kCacheHashedBytes,
  kCacheSplicedBytes,
  kCacheChunkFetches,
  kMirrorReadBytes,
  kFetchResolves,
  kVerifyPasses,
  kVerifyFailures,
  kFuseRequestDuration,
  kFuseErrors,
  kReadsInFlight,
  kBytesInFlight,
  kTransferSpeed,
  kWindowSpeed,
  kWindowSuccessRatio,
  kAlertActive,
  kCount,
};

struct MetricDef {
  const char* name;  // "modelfs_cache_miss_bytes_total"
  MetricType type;
  const char* help;  // one line, what it counts and in which unit
  // Label names (at most two; nullptr = unused). Values must come from a bounded set.
  const char* labels[2];
};

// The table, indexed by static_cast<int>(Metric).
const MetricDef& GetMetricDef(Metric m);
// The metric with this name, or Metric::kCount.
Metric FindMetric(const std::string& name);

// Histogram bucket upper bounds for request latencies, in seconds: 100 us (a cached stat) to 30 s
// (a read waiting on a stalled mirror), about 2.5x apart.
constexpr std::array<double, 14> kLatencyBuckets = {0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005,
                                                    0.01,   0.025,   0.05,   0.1,   0.25,   1,
                                                    5,      30};

// A counter or gauge value. Lock-free.
class MetricValue {
 public:
  void Set(double v) { v_.store(v, std::memory_order_relaxed); }
  void Add(double d) {
    double cur = v_.load(std::memory_order_relaxed);
    while (!v_.compare_exchange_weak(cur, cur + d, std::memory_order_relaxed)) {
    }
  }
  double Get() const { return v_.load(std::memory_order_relaxed); }

 private:
  std::atomic<double> v_{0};
};

// A fixed-bucket histogram over kLatencyBuckets (seconds). ObserveNanos is lock-free: three relaxed
// atomic adds and a short scan of 14 bounds.
class Histogram {
 public:
  void ObserveNanos(uint64_t ns);
  uint64_t count() const { return count_.load(std::memory_order_relaxed); }
  double sum_seconds() const { return static_cast<double>(sum_ns_.load(std::memory_order_relaxed)) * 1e-9; }
  // Observations <= kLatencyBuckets[i] and > the previous bound (not cumulative); index
  // kLatencyBuckets.size() holds the ones above the last bound.
  uint64_t bucket(size_t i) const { return buckets_[i].load(std::memory_order_relaxed); }

 private:
  std::array<std::atomic<uint64_t>, kLatencyBuckets.size() + 1> buckets_{};
  std::atomic<uint64_t> count_{0};
  std::atomic<uint64_t> sum_ns_{0};  // nanoseconds: integer adds stay exact and lock-free
};

class MetricsRegistry {
 public:
  MetricsRegistry() = default;
  MetricsRegistry(const MetricsRegistry&) = delete;
  MetricsRegistry& operator=(const MetricsRegistry&) = delete;

  // The series of a counter or gauge with these label values (one per declared label, in order),
  // created at 0 on first use. Never null; the pointer is valid for the registry's lifetime.
  // Passing a histogram metric or the wrong number of labels is a programming error (aborts).
  MetricValue* Value(Metric m, const std::vector<std::string>& label_values = {});
  Histogram* Hist(Metric m, const std::vector<std::string>& label_values = {});
  // The current value of a series, or 0 if it was never created (tests, status output).
  double Get(Metric m, const std::vector<std::string>& label_values = {}) const;
  // Every series of a counter or gauge created so far: its label values and current value,
  // ordered by label values (the status JSON lists the FUSE error counts this way).
  std::vector<std::pair<std::vector<std::string>, double>> Values(Metric m) const;

  // Every series in the text exposition format: for each metric of the table that has at least
  // one series, "# HELP" and "# TYPE" lines, then its samples sorted by label values; histograms
  // as _bucket{le=...} (cumulative, ending with +Inf), _sum and _count.
  std::string RenderPrometheus() const;

 private:
  struct Series {
    std::vector<std::string> labels;
    MetricValue value;
    Histogram hist;
  };
  Series* GetSeries(Metric m, const std::vector<std::string>& label_values);

  mutable std::mutex mu_;  // guards series_ (the map, not the values)
  // Per metric: label values joined with '\0' -> series. unique_ptr keeps addresses stable.
  std::map<std::string, std::unique_ptr<Series>> series_[static_cast<int>(Metric::kCount)];
};

// Exposition helpers, exposed for tests.
std::string EscapeHelp(const std::string& s);        // '\' -> "\\", newline -> "\n"
std::string EscapeLabelValue(const std::string& s);  // also '"' -> "\""
std::string FormatMetricNumber(double v);            // integers without a decimal point; +Inf
// docs/metrics.md's table: one Markdown row per metric (name, type, labels, help).
std::string MetricsMarkdownTable();

}  // namespace modelfs
