// tools/stats_sampler.h: made-up cache and mirror stats go into the right metric series (labelled
// by each mirror's host:port) and status lists, and add up to the alert window's counters. No
// store, no mirror, no thread.
#include "tools/stats_sampler.h"

#include <gtest/gtest.h>

#include "cache/disk_blob_store.h"
#include "fetch/mirror_set.h"

namespace modelfs::cli {
namespace {

TEST(StatsSamplerTest, CacheCountersBecomeMetricsAndTheStatusObject) {
  MetricsRegistry r;
  CacheStats c;
  c.hit_bytes = 10;
  c.miss_bytes = 20;
  c.used_bytes = 4096;
  c.quota_bytes = 1 << 20;
  c.verify_failures = 2;
  c.overhead_bytes = 8192;
  c.fetches = 3;
  nlohmann::json j = SampleCache(c, &r);
  EXPECT_EQ(r.Get(Metric::kCacheHitBytes), 10);
  EXPECT_EQ(r.Get(Metric::kCacheMissBytes), 20);
  EXPECT_EQ(r.Get(Metric::kCacheUsedBytes), 4096);
  EXPECT_EQ(r.Get(Metric::kCacheQuotaBytes), 1 << 20);
  EXPECT_EQ(r.Get(Metric::kVerifyFailures), 2);
  EXPECT_EQ(r.Get(Metric::kCacheChunkFetches), 3);
  EXPECT_EQ(j["hit_bytes"], 10);
  EXPECT_EQ(j["overhead_bytes"], 8192);  // in the status, not a metric of its own
  EXPECT_EQ(j["verify_failures"], 2);
}

TEST(StatsSamplerTest, MirrorsAndTransfersBecomeSeriesListsAndWindowCounters) {
  MetricsRegistry r;
  MirrorSetStats st;
  st.failovers = 4;
  st.rate_limited = 1;
  st.bad_source_reports = 2;
  MirrorStats a;
  a.endpoint = "http://a.example:8080/";
  a.calls_ok = 90;
  a.calls_failed = 3;
  a.latency_ms = 250;
  a.http.bytes_received = 1000;
  a.http.retries = 5;
  a.http.failures = 1;
  MirrorStats b;
  b.endpoint = "https://b.example";
  b.healthy = false;
  b.calls_ok = 10;
  b.http.bytes_received = 500;
  st.mirrors = {a, b};
  TransferInfo t;
  t.file = "org/m@0123456789ab:x.safetensors";
  t.mirror = "a.example:8080";
  t.reads_in_flight = 2;
  t.bytes_in_flight = 8 << 20;
  t.bytes_done = 4 << 20;
  MirrorsSample s = SampleMirrors(st, {t}, &r);
  EXPECT_EQ(s.ok, 100u);
  EXPECT_EQ(s.failed, 3u + 5u);  // failed calls plus retried attempts
  EXPECT_EQ(s.bytes, 1500u);
  EXPECT_EQ(s.reads_in_flight, 2);
  EXPECT_EQ(s.bytes_in_flight, 8 << 20);
  EXPECT_EQ(r.Get(Metric::kFetchCalls, {"a.example:8080", "ok"}), 90);
  EXPECT_EQ(r.Get(Metric::kFetchCalls, {"a.example:8080", "failed"}), 3);
  EXPECT_EQ(r.Get(Metric::kMirrorLatency, {"a.example:8080"}), 0.25);  // seconds
  EXPECT_EQ(r.Get(Metric::kMirrorHealthy, {"a.example:8080"}), 1);
  EXPECT_EQ(r.Get(Metric::kMirrorHealthy, {"b.example:443"}), 0);
  EXPECT_EQ(r.Get(Metric::kFetchBytes, {"b.example:443"}), 500);
  EXPECT_EQ(r.Get(Metric::kFetchFailures, {"http"}), 1);
  EXPECT_EQ(r.Get(Metric::kFetchFailures, {"rate_limited"}), 1);
  EXPECT_EQ(r.Get(Metric::kFetchFailures, {"bad_source"}), 2);
  EXPECT_EQ(r.Get(Metric::kFetchRetries), 5);
  EXPECT_EQ(r.Get(Metric::kMirrorFailovers), 4);
  ASSERT_EQ(s.mirrors.size(), 2u);
  EXPECT_EQ(s.mirrors[0]["mirror"], "a.example:8080");
  EXPECT_EQ(s.mirrors[1]["healthy"], false);
  ASSERT_EQ(s.transfers.size(), 1u);
  EXPECT_EQ(s.transfers[0]["file"], t.file);
  EXPECT_EQ(s.transfers[0]["bytes"], 4 << 20);
  EXPECT_EQ(s.transfers[0]["reads_in_flight"], 2);
}

TEST(StatsSamplerTest, FuseErrorsListedByOpAndErrno) {
  MetricsRegistry r;
  EXPECT_TRUE(FuseErrorsJson(r).empty());
  r.Value(Metric::kFuseErrors, {"read", "EIO"})->Add(3);
  r.Value(Metric::kFuseErrors, {"lookup", "ENOENT"})->Add(12);
  nlohmann::json e = FuseErrorsJson(r);
  ASSERT_EQ(e.size(), 2u);
  EXPECT_EQ(e[0], nlohmann::json({{"op", "lookup"}, {"errno", "ENOENT"}, {"count", 12}}));
  EXPECT_EQ(e[1], nlohmann::json({{"op", "read"}, {"errno", "EIO"}, {"count", 3}}));
}

}  // namespace
}  // namespace modelfs::cli
