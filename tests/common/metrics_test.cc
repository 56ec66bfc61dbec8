// The metric table, the registry and the Prometheus text renderer: exact exposition text for a
// counter, a labelled gauge and a histogram, escaping, number formatting, and docs/metrics.md
// matching the table.
#include "common/metrics.h"

#include <gtest/gtest.h>

#include <fstream>
#include <regex>
#include <set>
#include <sstream>
#include <thread>

namespace modelfs {
namespace {

TEST(MetricsTableTest, NamesFollowPrometheusConventions) {
  std::set<std::string> names;
  for (int i = 0; i < static_cast<int>(Metric::kCount); ++i) {
    const MetricDef& d = GetMetricDef(static_cast<Metric>(i));
    const std::string n = d.name;
    EXPECT_TRUE(names.insert(n).second) << "duplicate " << n;
    EXPECT_EQ(n.rfind("modelfs_", 0), 0u) << n;
    EXPECT_TRUE(std::regex_match(n, std::regex("[a-z_]+"))) << n;
    const bool total = n.size() > 6 && n.compare(n.size() - 6, 6, "_total") == 0;
    // Counters and only counters end in _total.
    EXPECT_EQ(total, d.type == MetricType::kCounter) << n;
    EXPECT_NE(std::string(d.help), "") << n;
    EXPECT_EQ(FindMetric(n), static_cast<Metric>(i));
    // A unit word appears in every name except counts and ratios.
    const bool unit = n.find("_bytes") != std::string::npos || n.find("_seconds") != std::string::npos ||
                      n.find("_ratio") != std::string::npos || total || n.find("in_flight") != std::string::npos ||
                      n == "modelfs_mirror_healthy" || n == "modelfs_alert_active";
    EXPECT_TRUE(unit) << n << " names no unit";
  }
  EXPECT_EQ(FindMetric("modelfs_nope"), Metric::kCount);
}

TEST(MetricsRenderTest, CounterExactText) {
  MetricsRegistry r;
  r.Value(Metric::kCacheMissBytes)->Add(4096);
  r.Value(Metric::kCacheMissBytes)->Add(1);
  EXPECT_EQ(r.RenderPrometheus(),
            "# HELP modelfs_cache_miss_bytes_total Bytes served from freshly fetched chunks (not yet cached "
            "when asked for).\n"
            "# TYPE modelfs_cache_miss_bytes_total counter\n"
            "modelfs_cache_miss_bytes_total 4097\n");
  EXPECT_EQ(r.Get(Metric::kCacheMissBytes), 4097);
}

TEST(MetricsRenderTest, LabelledGaugeSortedAndEscaped) {
  MetricsRegistry r;
  r.Value(Metric::kMirrorHealthy, {"b.example:443"})->Set(0);
  r.Value(Metric::kMirrorHealthy, {"a.example:443"})->Set(1);
  // Label values are escaped: backslash, double quote, newline.
  r.Value(Metric::kMirrorHealthy, {"odd\"host\\x\ny"})->Set(1);
  EXPECT_EQ(r.RenderPrometheus(),
            "# HELP modelfs_mirror_healthy 1 if the mirror is in use, 0 while it sits out a cool-down or a "
            "rate-limit pause.\n"
            "# TYPE modelfs_mirror_healthy gauge\n"
            "modelfs_mirror_healthy{mirror=\"a.example:443\"} 1\n"
            "modelfs_mirror_healthy{mirror=\"b.example:443\"} 0\n"
            "modelfs_mirror_healthy{mirror=\"odd\\\"host\\\\x\\ny\"} 1\n");
}

TEST(MetricsRenderTest, TwoLabelsInDeclaredOrder) {
  MetricsRegistry r;
  r.Value(Metric::kFetchCalls, {"m:1", "ok"})->Set(5);
  const std::string text = r.RenderPrometheus();
  EXPECT_NE(text.find("modelfs_fetch_calls_total{mirror=\"m:1\",result=\"ok\"} 5\n"), std::string::npos) << text;
}

TEST(MetricsRenderTest, HistogramExactText) {
  MetricsRegistry r;
  Histogram* h = r.Hist(Metric::kFuseRequestDuration, {"read"});
  h->ObserveNanos(50'000);         // 50 us: first bucket (<= 0.0001)
  h->ObserveNanos(100'000);        // exactly on a bound: that bucket (le is inclusive)
  h->ObserveNanos(3'000'000);      // 3 ms: <= 0.005
  h->ObserveNanos(60'000'000'000); // 60 s: above the last bound, only +Inf
  const std::string n = "modelfs_fuse_request_duration_seconds";
  std::string want = "# HELP " + n + " Time from a FUSE request's arrival to its reply, by operation.\n# TYPE " + n +
                     " histogram\n";
  const char* les[] = {"0.0001", "0.00025", "0.0005", "0.001", "0.0025", "0.005", "0.01",
                       "0.025",  "0.05",    "0.1",    "0.25",  "1",      "5",     "30"};
  const int cum[] = {2, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3, 3, 3, 3};
  for (int i = 0; i < 14; ++i)
    want += n + "_bucket{op=\"read\",le=\"" + les[i] + "\"} " + std::to_string(cum[i]) + "\n";
  want += n + "_bucket{op=\"read\",le=\"+Inf\"} 4\n";
  want += n + "_sum{op=\"read\"} 60.00315\n";
  want += n + "_count{op=\"read\"} 4\n";
  EXPECT_EQ(r.RenderPrometheus(), want);
  EXPECT_EQ(r.Get(Metric::kFuseRequestDuration, {"read"}), 4);
  EXPECT_EQ(r.Get(Metric::kFuseRequestDuration, {"open"}), 0);  // never created
}

TEST(MetricsRenderTest, EmptyRegistryRendersNothingAndSeriesAreStable) {
  MetricsRegistry r;
  EXPECT_EQ(r.RenderPrometheus(), "");
  MetricValue* a = r.Value(Metric::kFetchBytes, {"x:1"});
  r.Value(Metric::kFetchBytes, {"y:1"});
  EXPECT_EQ(a, r.Value(Metric::kFetchBytes, {"x:1"}));
}

TEST(MetricsRenderTest, HelpEscapingAndNumbers) {
  EXPECT_EQ(EscapeHelp("a\\b\nc\"d"), "a\\\\b\\nc\"d");  // quotes stay in HELP
  EXPECT_EQ(EscapeLabelValue("a\\b\nc\"d"), "a\\\\b\\nc\\\"d");
  EXPECT_EQ(FormatMetricNumber(0), "0");
  EXPECT_EQ(FormatMetricNumber(21474836480.0), "21474836480");
  EXPECT_EQ(FormatMetricNumber(0.5), "0.5");
  EXPECT_EQ(FormatMetricNumber(1.0 / 0.0), "+Inf");
}

TEST(MetricsRenderTest, ConcurrentObservationsAreAllCounted) {
  MetricsRegistry r;
  Histogram* h = r.Hist(Metric::kFuseRequestDuration, {"getattr"});
  MetricValue* v = r.Value(Metric::kCacheHitBytes);
  std::vector<std::thread> ts;
  for (int t = 0; t < 4; ++t)
    ts.emplace_back([&] {
      for (int i = 0; i < 10000; ++i) {
        h->ObserveNanos(1000);
        v->Add(2);
      }
    });
  for (auto& t : ts) t.join();
  EXPECT_EQ(h->count(), 40000u);
  EXPECT_EQ(v->Get(), 80000);
  EXPECT_NE(r.RenderPrometheus().find("_count{op=\"getattr\"} 40000\n"), std::string::npos);
}

// docs/metrics.md carries the table exactly as `modelfs metrics --list` prints it.
TEST(MetricsDocTest, DocsListEveryMetricOfTheTable) {
  std::ifstream in(std::string(MODELFS_SOURCE_DIR) + "/docs/metrics.md");
  ASSERT_TRUE(in) << "docs/metrics.md missing";
  std::stringstream ss;
  ss << in.rdbuf();
  const std::string doc = ss.str();
  EXPECT_NE(doc.find(MetricsMarkdownTable()), std::string::npos)
      << "docs/metrics.md is out of date: regenerate its table with `modelfs metrics --list`";
  // And it names no metric the table does not have.
  std::regex name_re("`(modelfs_[a-z_]+)`");
  for (auto it = std::sregex_iterator(doc.begin(), doc.end(), name_re); it != std::sregex_iterator(); ++it) {
    std::string n = (*it)[1];
    for (const char* suffix : {"_bucket", "_sum", "_count"})
      if (n.size() > strlen(suffix) && n.compare(n.size() - strlen(suffix), strlen(suffix), suffix) == 0 &&
          FindMetric(n) == Metric::kCount)
        n.resize(n.size() - strlen(suffix));
    EXPECT_NE(FindMetric(n), Metric::kCount) << n << " is in docs/metrics.md but not in the table";
  }
}

}  // namespace
}  // namespace modelfs
