// ErrorReporter: every error reply counted by op and errno; normal answers (lookup ENOENT,
// getxattr ENODATA) counted but not logged as failures; failures logged at most N lines a second
// with the path asked for only when a line is written.
#include "fs/error_reporter.h"

#include <gtest/gtest.h>

#include <cerrno>

#include "common/log.h"
#include "common/metrics.h"
#include "fs/errno.h"

namespace modelfs {
namespace {

TEST(ErrnoNameTest, SymbolicNames) {
  EXPECT_EQ(ErrnoName(ENOENT), "ENOENT");
  EXPECT_EQ(ErrnoName(EIO), "EIO");
  EXPECT_EQ(ErrnoName(EROFS), "EROFS");
  EXPECT_EQ(ErrnoName(ENODATA), "ENODATA");
  EXPECT_EQ(ErrnoName(100000), "E100000");
}

TEST(ErrorReporterTest, CountsEveryReplyByOpAndErrno) {
  MetricsRegistry metrics;
  ErrorReporter rep(&metrics, 100);
  int paths = 0;
  auto path = [&] {
    ++paths;
    return std::string("/acme/tiny/model.safetensors");
  };
  rep.Report("read", EIO, path, "unavailable: mirror down");
  rep.Report("read", EIO, path, "unavailable: mirror down");
  rep.Report("open", EACCES, path, "permission denied");
  rep.Report("lookup", ENOENT, path, "not found");
  rep.Report("getxattr", ENODATA, path, "no extended attributes");
  EXPECT_EQ(metrics.Get(Metric::kFuseErrors, {"read", "EIO"}), 2);
  EXPECT_EQ(metrics.Get(Metric::kFuseErrors, {"open", "EACCES"}), 1);
  EXPECT_EQ(metrics.Get(Metric::kFuseErrors, {"lookup", "ENOENT"}), 1);
  EXPECT_EQ(metrics.Get(Metric::kFuseErrors, {"getxattr", "ENODATA"}), 1);
  // Normal answers write no warning line (and, below debug level, never build the path).
  EXPECT_EQ(rep.lines_written(), 3u);
  EXPECT_EQ(paths, 3);
  const auto series = metrics.Values(Metric::kFuseErrors);
  ASSERT_EQ(series.size(), 4u);
  EXPECT_EQ(series[0].first, (std::vector<std::string>{"getxattr", "ENODATA"}));  // ordered by labels
}

TEST(ErrorReporterTest, NormalAnswers) {
  EXPECT_TRUE(ErrorReporter::IsNormalAnswer("lookup", ENOENT));
  EXPECT_TRUE(ErrorReporter::IsNormalAnswer("getxattr", ENODATA));
  EXPECT_FALSE(ErrorReporter::IsNormalAnswer("getattr", ENOENT));
  EXPECT_FALSE(ErrorReporter::IsNormalAnswer("lookup", EIO));
  EXPECT_FALSE(ErrorReporter::IsNormalAnswer("read", EIO));
}

TEST(ErrorReporterTest, LogLinesAreRateLimitedButCountsAreNot) {
  MetricsRegistry metrics;
  ErrorReporter rep(&metrics, 5);
  int paths = 0;
  for (int i = 0; i < 1000; ++i) {
    rep.Report("read", EIO, [&] {
      ++paths;
      return std::string("/f");
    }, "io error");
  }
  EXPECT_EQ(metrics.Get(Metric::kFuseErrors, {"read", "EIO"}), 1000);
  // 1000 calls take far less than a second: one window, 5 lines.
  EXPECT_EQ(rep.lines_written(), 5u);
  EXPECT_EQ(rep.lines_suppressed(), 995u);
  EXPECT_EQ(paths, 5);
}

TEST(ErrorReporterTest, WithoutRegistryStillLogs) {
  ErrorReporter rep(nullptr, 5);
  rep.Report("read", EIO, [] { return std::string("/f"); }, "io error");
  EXPECT_EQ(rep.lines_written(), 1u);
}

}  // namespace
}  // namespace modelfs
