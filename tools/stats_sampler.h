// What one monitor sample copies from the layers: the counters the cache and fetch layers already
// keep (CacheStats, MirrorSetStats, the live transfers) go into the metrics registry
// (common/metrics.h) and into the status JSON's lists, and the mirrors' counters make the alert
// window's sample. Functions of values, so a test feeds made-up stats; the monitor
// (tools/monitor.h) calls them once per interval and adds the time, the window and the alerts.
//
// Sampling, not instrumenting: the read path pays nothing for these metrics. Locks: none of its
// own; the registry's (a mutex only when a series is first created, lock-free updates after).
#pragma once

#include <cstdint>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/metrics.h"

namespace modelfs {
struct CacheStats;
struct MirrorSetStats;
struct TransferInfo;
}  // namespace modelfs

namespace modelfs::cli {

// The cache's counters into the kCache* and kVerify* metrics; returns the status's "cache" object.
nlohmann::json SampleCache(const CacheStats& c, MetricsRegistry* r);

// What SampleMirrors found.
struct MirrorsSample {
  nlohmann::json mirrors = nlohmann::json::array();    // the status's "mirrors" list
  nlohmann::json transfers = nlohmann::json::array();  // the status's "transfers" list
  double reads_in_flight = 0, bytes_in_flight = 0;     // summed over the transfers
  // For the alert window (tools/alerts.h): ok calls, failed calls plus retried attempts (a retried
  // attempt failed, even if its call then succeeded), bytes received.
  uint64_t ok = 0, failed = 0, bytes = 0;
};

// Every mirror's counters into the per-mirror metrics (labelled with its endpoint's host:port, a
// bounded set: the configured mirrors), the set's totals into the fetch metrics, and the live
// transfers into the status list. The in-flight gauges are the caller's to set (an offline mount
// has no mirrors and sets them to 0).
MirrorsSample SampleMirrors(const MirrorSetStats& st, const std::vector<TransferInfo>& transfers,
                            MetricsRegistry* r);

// The FUSE error replies (counted by the adapter as they happen, fs/error_reporter.h, not
// sampled) as the status's "fuse_errors" list, one entry per (op, errno) series.
nlohmann::json FuseErrorsJson(const MetricsRegistry& r);

}  // namespace modelfs::cli
