#include "common/metrics.h"

#include <cmath>
#include <cstdio>
#include <cstdlib>

namespace modelfs {
namespace {

// THE metric table. Names follow Prometheus conventions: modelfs_ prefix, base units (bytes,
// seconds, ratios in 0..1), _total on counters. Label values:
//   mirror  a configured endpoint's host:port (bounded by the configuration)
//   result  ok | failed
//   kind    http | rate_limited | bad_source
//   op      lookup getattr opendir readdir readdirplus open read release statfs (fs/fuse_adapter.cc);
//           for modelfs_fuse_errors_total also getxattr and the refused writes (setattr mknod mkdir
//           unlink rmdir symlink rename link create write setxattr removexattr fallocate)
//   errno   the symbolic errno of a FUSE error reply (ENOENT EIO EACCES EROFS ENODATA ...)
//   alert   low_success_rate | high_bandwidth (tools/alerts.h)
constexpr MetricDef kMetricTable[] = {
    {"modelfs_fetch_bytes_total", MetricType::kCounter,
     "Body bytes received from each mirror (API answers and chunk reads, every retry).", {"mirror", nullptr}},
    {"modelfs_http_requests_total", MetricType::kCounter,
     "HTTP requests sent to each mirror (HEAD and GET, every redirect hop and retry).", {"mirror", nullptr}},
    {"modelfs_fetch_calls_total", MetricType::kCounter,
     "API calls and chunk reads per mirror by result; a failed call may have failed over.",
     {"mirror", "result"}},
    {"modelfs_fetch_failures_total", MetricType::kCounter,
     "Failures by kind: http = requests that failed after their retries, rate_limited = calls a "
     "mirror's 429 turned away, bad_source = mirrors named after a whole-file hash mismatch.",
     {"kind", nullptr}},
    {"modelfs_fetch_retries_total", MetricType::kCounter,
     "Requests repeated after a transient failure (all mirrors).", {nullptr, nullptr}},
    {"modelfs_mirror_failovers_total", MetricType::kCounter,
     "Calls that moved to another mirror after a failure.", {nullptr, nullptr}},
    {"modelfs_mirror_healthy", MetricType::kGauge,
     "1 if the mirror is in use, 0 while it sits out a cool-down or a rate-limit pause.", {"mirror", nullptr}},
    {"modelfs_mirror_latency_seconds", MetricType::kGauge,
     "Moving average of the mirror's small-call latency (0 = not measured yet).", {"mirror", nullptr}},
    {"modelfs_mirror_throughput_bytes_per_second", MetricType::kGauge,
     "Moving average of the mirror's transfer rate on chunk reads (0 = not measured yet).", {"mirror", nullptr}},
    {"modelfs_cache_hit_bytes_total", MetricType::kCounter,
     "Bytes served from cached blocks.", {nullptr, nullptr}},
    {"modelfs_cache_miss_bytes_total", MetricType::kCounter,
     "Bytes served from freshly fetched chunks (not yet cached when asked for).", {nullptr, nullptr}},
    {"modelfs_cache_fetched_bytes_total", MetricType::kCounter,
     "Bytes of chunks fetched from the network by the cache (demand and prefetch).", {nullptr, nullptr}},
    {"modelfs_cache_evicted_bytes_total", MetricType::kCounter,
     "Block data evicted to make room.", {nullptr, nullptr}},
    {"modelfs_cache_uncached_bytes_total", MetricType::kCounter,
     "Bytes fetched but not stored (quota full of files in use, or a disk error).", {nullptr, nullptr}},
    {"modelfs_cache_corrupt_blocks_total", MetricType::kCounter,
     "Cached blocks whose XXH3 did not match (treated as misses and refetched).", {nullptr, nullptr}},
    {"modelfs_cache_used_bytes", MetricType::kGauge,
     "Block data currently in the cache (charged in 4 KiB pages).", {nullptr, nullptr}},
    {"modelfs_cache_quota_bytes", MetricType::kGauge,
     "The cache's resolved quota for block data (0 = no limit).", {nullptr, nullptr}},
    {"modelfs_cache_peak_used_bytes", MetricType::kGauge,
     "Highest block data in the cache since the mount started (never above the quota).", {nullptr, nullptr}},
    {"modelfs_cache_refused_bytes_total", MetricType::kCounter,
     "Block bytes not cached because no room could be made (every blob in use or pinned).", {nullptr, nullptr}},
    {"modelfs_cache_distrusted_refetches_total", MetricType::kCounter,
     "Chunk answers fetched again because their host was blamed for a whole-file hash mismatch.",
     {nullptr, nullptr}},
    {"modelfs_cache_hashed_bytes_total", MetricType::kCounter,
     "Bytes fed to whole-file hashes (SHA-256, git SHA-1) as they landed; a file hashed once counts its size.",
     {nullptr, nullptr}},
    {"modelfs_cache_spliced_bytes_total", MetricType::kCounter,
     "Bytes of cache blocks checked in this run that the kernel copied from the cache file itself (splice), "
     "not through the daemon's memory.",
     {nullptr, nullptr}},
    {"modelfs_cache_chunk_fetches_total", MetricType::kCounter,
     "Chunk ranges the cache asked the network for (demand and prefetch).", {nullptr, nullptr}},
    {"modelfs_mirror_read_bytes_total", MetricType::kCounter,
     "File content bytes each mirror served to the cache (chunk reads that succeeded there).",
     {"mirror", nullptr}},
    {"modelfs_fetch_resolves_total", MetricType::kCounter,
     "/resolve/ lookups of a file's download URL per mirror (URL cache misses).", {"mirror", nullptr}},
    {"modelfs_verify_passes_total", MetricType::kCounter,
     "Files whose whole-file hash (SHA-256 or git blob SHA-1) matched the hub's.", {nullptr, nullptr}},
    {"modelfs_verify_failures_total", MetricType::kCounter,
     "Files whose whole-file hash did not match (their blocks were dropped).", {nullptr, nullptr}},
    {"modelfs_fuse_request_duration_seconds", MetricType::kHistogram,
     "Time from a FUSE request's arrival to its reply, by operation.", {"op", nullptr}},
    {"modelfs_fuse_errors_total", MetricType::kCounter,
     "FUSE requests answered with an error, by operation and errno (a lookup of a missing name "
     "counts as ENOENT).", {"op", "errno"}},
    {"modelfs_fetch_reads_in_flight", MetricType::kGauge,
     "Chunk reads running against the mirrors now (demand and prefetch): the prefetch window in "
     "effect.", {nullptr, nullptr}},
    {"modelfs_fetch_bytes_in_flight", MetricType::kGauge,
     "Bytes requested by the chunk reads running now.", {nullptr, nullptr}},
    {"modelfs_transfer_speed_bytes_per_second", MetricType::kGauge,
     "Bytes received from all mirrors over the last sampling interval (1 s), per second.", {nullptr, nullptr}},
    {"modelfs_window_speed_bytes_per_second", MetricType::kGauge,
     "Average download speed over the alert window (--alert-window).", {nullptr, nullptr}},
    {"modelfs_window_success_ratio", MetricType::kGauge,
     "Share of mirror calls that succeeded over the alert window, each retried attempt counting "
     "as a failure (1 when there were none).", {nullptr, nullptr}},
    {"modelfs_alert_active", MetricType::kGauge,
     "1 while the alert holds (--alert-min-success-rate, --alert-max-bandwidth), else 0.", {"alert", nullptr}},
};
static_assert(sizeof(kMetricTable) / sizeof(kMetricTable[0]) == static_cast<size_t>(Metric::kCount),
              "one kMetricTable row per Metric value");

size_t LabelCount(const MetricDef& d) { return (d.labels[0] ? 1 : 0) + (d.labels[1] ? 1 : 0); }

const char* TypeName(MetricType t) {
  switch (t) {
    case MetricType::kCounter: return "counter";
    case MetricType::kGauge: return "gauge";
    case MetricType::kHistogram: return "histogram";
  }
  return "untyped";
}

// `{a="x",b="y"}` (plus an `le` pair when given); "" when there is nothing to put in it.
std::string LabelSet(const MetricDef& d, const std::vector<std::string>& values, const char* le = nullptr) {
  std::string out;
  for (size_t i = 0; i < values.size(); ++i) {
    out += out.empty() ? "{" : ",";
    out += std::string(d.labels[i]) + "=\"" + EscapeLabelValue(values[i]) + "\"";
  }
  if (le) {
    out += out.empty() ? "{" : ",";
    out += std::string("le=\"") + le + "\"";
  }
  if (!out.empty()) out += "}";
  return out;
}

}  // namespace

const MetricDef& GetMetricDef(Metric m) { return kMetricTable[static_cast<int>(m)]; }

Metric FindMetric(const std::string& name) {
  for (int i = 0; i < static_cast<int>(Metric::kCount); ++i)
    if (name == kMetricTable[i].name) return static_cast<Metric>(i);
  return Metric::kCount;
}

void Histogram::ObserveNanos(uint64_t ns) {
  const double s = static_cast<double>(ns) * 1e-9;
  size_t i = 0;
  while (i < kLatencyBuckets.size() && s > kLatencyBuckets[i]) ++i;
  buckets_[i].fetch_add(1, std::memory_order_relaxed);
  sum_ns_.fetch_add(ns, std::memory_order_relaxed);
  count_.fetch_add(1, std::memory_order_relaxed);
}

MetricsRegistry::Series* MetricsRegistry::GetSeries(Metric m, const std::vector<std::string>& label_values) {
  const MetricDef& d = GetMetricDef(m);
  if (label_values.size() != LabelCount(d)) {
    fprintf(stderr, "modelfs: metric %s takes %zu labels, got %zu\n", d.name, LabelCount(d), label_values.size());
    abort();
  }
  std::string key;
  for (const auto& v : label_values) key += v + '\0';
  std::lock_guard<std::mutex> lock(mu_);
  auto& slot = series_[static_cast<int>(m)][key];
  if (!slot) {
    slot = std::make_unique<Series>();
    slot->labels = label_values;
  }
  return slot.get();
}

MetricValue* MetricsRegistry::Value(Metric m, const std::vector<std::string>& label_values) {
  if (GetMetricDef(m).type == MetricType::kHistogram) abort();
  return &GetSeries(m, label_values)->value;
}

Histogram* MetricsRegistry::Hist(Metric m, const std::vector<std::string>& label_values) {
  if (GetMetricDef(m).type != MetricType::kHistogram) abort();
  return &GetSeries(m, label_values)->hist;
}

double MetricsRegistry::Get(Metric m, const std::vector<std::string>& label_values) const {
  std::string key;
  for (const auto& v : label_values) key += v + '\0';
  std::lock_guard<std::mutex> lock(mu_);
  const auto& map = series_[static_cast<int>(m)];
  auto it = map.find(key);
  if (it == map.end()) return 0;
  return GetMetricDef(m).type == MetricType::kHistogram ? static_cast<double>(it->second->hist.count())
                                                         : it->second->value.Get();
}

std::vector<std::pair<std::vector<std::string>, double>> MetricsRegistry::Values(Metric m) const {
  if (GetMetricDef(m).type == MetricType::kHistogram) abort();
  std::vector<std::pair<std::vector<std::string>, double>> out;
  std::lock_guard<std::mutex> lock(mu_);
  for (const auto& [key, s] : series_[static_cast<int>(m)]) out.emplace_back(s->labels, s->value.Get());
  return out;
}

std::string MetricsRegistry::RenderPrometheus() const {
  std::string out;
  std::lock_guard<std::mutex> lock(mu_);
  for (int i = 0; i < static_cast<int>(Metric::kCount); ++i) {
    const auto& map = series_[i];
    if (map.empty()) continue;
    const MetricDef& d = kMetricTable[i];
    out += std::string("# HELP ") + d.name + " " + EscapeHelp(d.help) + "\n";
    out += std::string("# TYPE ") + d.name + " " + TypeName(d.type) + "\n";
    // std::map orders by the '\0'-joined label values: a stable order, scrape after scrape.
    for (const auto& [key, s] : map) {
      if (d.type != MetricType::kHistogram) {
        out += d.name + LabelSet(d, s->labels) + " " + FormatMetricNumber(s->value.Get()) + "\n";
        continue;
      }
      uint64_t cumulative = 0;
      for (size_t b = 0; b <= kLatencyBuckets.size(); ++b) {
        cumulative += s->hist.bucket(b);
        const std::string le = b < kLatencyBuckets.size() ? FormatMetricNumber(kLatencyBuckets[b]) : "+Inf";
        out += std::string(d.name) + "_bucket" + LabelSet(d, s->labels, le.c_str()) + " " +
               std::to_string(cumulative) + "\n";
      }
      out += std::string(d.name) + "_sum" + LabelSet(d, s->labels) + " " + FormatMetricNumber(s->hist.sum_seconds()) + "\n";
      // _count equals the +Inf bucket by definition; use the bucket sum so the two always agree
      // within one scrape even while observations race with it.
      out += std::string(d.name) + "_count" + LabelSet(d, s->labels) + " " + std::to_string(cumulative) + "\n";
    }
  }
  return out;
}

namespace {

// '\' -> "\\", newline -> "\n", and with `quote` '"' -> "\"" (the text format's escapes).
std::string Escape(const std::string& s, bool quote) {
  std::string out;
  for (char c : s) {
    if (c == '\\') out += "\\\\";
    else if (c == '\n') out += "\\n";
    else if (quote && c == '"') out += "\\\"";
    else out.push_back(c);
  }
  return out;
}

}  // namespace

std::string EscapeHelp(const std::string& s) { return Escape(s, false); }

std::string EscapeLabelValue(const std::string& s) { return Escape(s, true); }

std::string FormatMetricNumber(double v) {
  if (std::isnan(v)) return "NaN";
  if (std::isinf(v)) return v > 0 ? "+Inf" : "-Inf";
  char buf[64];
  // Integral values (byte counts, counts) print exactly; 2^53 is where doubles stop being exact.
  if (v == std::floor(v) && std::fabs(v) < 9007199254740992.0) {
    snprintf(buf, sizeof buf, "%.0f", v);
  } else {
    snprintf(buf, sizeof buf, "%.9g", v);
  }
  return buf;
}

std::string MetricsMarkdownTable() {
  std::string out = "| metric | type | labels | what it measures |\n|---|---|---|---|\n";
  for (const auto& d : kMetricTable) {
    std::string labels;
    for (const char* l : d.labels) {
      if (!l) continue;
      if (!labels.empty()) labels += ", ";
      labels += std::string("`") + l + "`";
    }
    out += std::string("| `") + d.name + "` | " + TypeName(d.type) + " | " + (labels.empty() ? "—" : labels) +
           " | " + d.help + " |\n";
  }
  return out;
}

}  // namespace modelfs
