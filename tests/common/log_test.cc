// The logger's formats and its scrubbing of secrets, read back from a real stderr redirect.
#include "common/log.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>

#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

#include "common/file_util.h"
#include "tests/testing/temp_dir.h"

namespace modelfs {
namespace {

// Runs fn with stderr pointed at a file and returns what was written.
template <typename Fn>
std::string CaptureStderr(Fn fn) {
  testing::TempDir dir("modelfs-log");
  const std::string path = dir.Sub("err");
  fflush(stderr);
  const int saved = dup(STDERR_FILENO);
  const int fd = open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  dup2(fd, STDERR_FILENO);
  close(fd);
  fn();
  dup2(saved, STDERR_FILENO);
  close(saved);
  FILE* f = fopen(path.c_str(), "r");
  std::string out;
  char buf[4096];
  size_t n;
  while (f && (n = fread(buf, 1, sizeof(buf), f)) > 0) out.append(buf, n);
  if (f) fclose(f);
  return out;
}

class LogTest : public ::testing::Test {
 protected:
  void SetUp() override { SetLogLevel(LogLevel::kInfo); }
  void TearDown() override {
    SetLogLevel(LogLevel::kWarn);
    SetLogFormat(LogFormat::kText);
  }
};

TEST_F(LogTest, ParseFormat) {
  LogFormat f;
  ASSERT_TRUE(ParseLogFormat("json", &f));
  EXPECT_EQ(f, LogFormat::kJson);
  ASSERT_TRUE(ParseLogFormat("logfmt", &f));
  EXPECT_EQ(f, LogFormat::kLogfmt);
  ASSERT_TRUE(ParseLogFormat("text", &f));
  EXPECT_EQ(f, LogFormat::kText);
  EXPECT_FALSE(ParseLogFormat("yaml", &f));
}

TEST_F(LogTest, JsonLinesParseAndCarryFields) {
  SetLogFormat(LogFormat::kJson);
  const std::string out = CaptureStderr([] {
    MODELFS_LOG(kWarn, "quote \" backslash \\ newline \n tab \t done %d", 42);
    MODELFS_LOG(kDebug, "dropped: below the level");
    MODELFS_LOG(kInfo, "second");
  });
  std::istringstream ss(out);
  std::string line;
  std::vector<nlohmann::json> lines;
  while (std::getline(ss, line)) lines.push_back(nlohmann::json::parse(line));
  ASSERT_EQ(lines.size(), 2u) << out;
  EXPECT_EQ(lines[0]["level"], "warn");
  EXPECT_EQ(lines[0]["msg"], "quote \" backslash \\ newline \n tab \t done 42");
  EXPECT_EQ(lines[0]["src"].get<std::string>().rfind("log_test.cc:", 0), 0u);
  EXPECT_EQ(lines[0]["ts"].get<std::string>().size(), 24u);  // 2024-05-01T12:00:00.123Z
  EXPECT_EQ(lines[1]["msg"], "second");
}

TEST_F(LogTest, Logfmt) {
  SetLogFormat(LogFormat::kLogfmt);
  const std::string out = CaptureStderr([] { MODELFS_LOG(kError, "a \"b\" c"); });
  EXPECT_EQ(out.rfind("ts=", 0), 0u) << out;
  EXPECT_NE(out.find(" level=error src=log_test.cc:"), std::string::npos) << out;
  EXPECT_NE(out.find(" msg=\"a \\\"b\\\" c\"\n"), std::string::npos) << out;
}

TEST_F(LogTest, TextKeepsTheClassicShape) {
  const std::string out = CaptureStderr([] { MODELFS_LOG(kInfo, "hello %s", "world"); });
  EXPECT_NE(out.find("Z I log_test.cc:"), std::string::npos) << out;
  EXPECT_NE(out.find("] hello world\n"), std::string::npos) << out;
}

TEST_F(LogTest, SecretsAndSignedQueriesNeverReachTheLog) {
  RegisterLogSecret("s3cr3t-registered-value");
  RegisterLogSecret("short");  // too short to register: ordinary words must survive
  EXPECT_EQ(RedactSecrets("token s3cr3t-registered-value here"), "token [redacted] here");
  EXPECT_EQ(RedactSecrets("a short word"), "a short word");
  EXPECT_EQ(RedactSecrets("GET https://cdn.example/x/y.bin?Expires=1&Signature=abc done"),
            "GET https://cdn.example/x/y.bin?[redacted] done");
  EXPECT_EQ(RedactSecrets("url http://h/p no query"), "url http://h/p no query");
  EXPECT_EQ(RedactSecrets("Authorization: Bearer abc.def.ghi ok"),
            "Authorization: Bearer [redacted] ok");
  EXPECT_EQ(RedactSecrets("tok=hf_abcdefghijklmnopqrstuvwxyz012345 end"), "tok=[redacted] end");
  EXPECT_EQ(RedactSecrets("file hf_small.json"), "file hf_small.json");
  SetLogFormat(LogFormat::kJson);
  const std::string out = CaptureStderr([] {
    MODELFS_LOG(kWarn, "fetch https://cdn/a?X-Amz-Signature=zzz failed for s3cr3t-registered-value");
  });
  EXPECT_EQ(out.find("zzz"), std::string::npos) << out;
  EXPECT_EQ(out.find("s3cr3t"), std::string::npos) << out;
  EXPECT_NE(out.find("https://cdn/a?[redacted]"), std::string::npos) << out;
}

uint64_t FileSize(const std::string& path) {
  struct stat st;
  return stat(path.c_str(), &st) == 0 ? static_cast<uint64_t>(st.st_size) : 0;
}
uint64_t Allocated(const std::string& path) {
  struct stat st;
  return stat(path.c_str(), &st) == 0 ? static_cast<uint64_t>(st.st_blocks) * 512 : 0;
}

// The log file is rotated at --log-max-size: never more than two files, each under the size plus
// one line, the newest lines in the current file, and both within LogDiskBound.
TEST_F(LogTest, LogFileRotatesAtMaxSizeAndKeepsOneOldFile) {
  testing::TempDir dir("modelfs-logrot");
  const std::string path = dir.Sub("modelfs.log");
  constexpr uint64_t kMax = 16 << 10;
  fflush(stderr);
  const int saved = dup(STDERR_FILENO);
  ASSERT_TRUE(LogToFile(path, kMax).ok());
  const std::string pad(300, 'x');
  uint64_t peak = 0, peak_disk = 0;
  for (int i = 0; i < 1000; i++) {
    MODELFS_LOG(kInfo, "line %d %s", i, pad.c_str());
    peak = std::max({peak, FileSize(path), FileSize(path + ".1")});
    peak_disk = std::max(peak_disk, Allocated(path) + Allocated(path + ".1"));
  }
  MODELFS_LOG(kInfo, "the last line");
  ASSERT_TRUE(LogToFile("", 0).ok());
  dup2(saved, STDERR_FILENO);
  close(saved);
  // 1000 lines of ~350 bytes: ~20 rotations; without them the file would be 350 KiB.
  EXPECT_LT(peak, kMax + kMaxLogLine);
  EXPECT_GE(peak, kMax - 1000);
  EXPECT_LE(peak_disk, LogDiskBound(kMax));
  EXPECT_GT(FileSize(path + ".1"), kMax / 2);
  EXPECT_NE(access((path + ".2").c_str(), F_OK), 0);
  std::string cur;
  ASSERT_TRUE(ReadFile(path, &cur));
  EXPECT_NE(cur.find("the last line"), std::string::npos);
  EXPECT_EQ(cur.find("line 0 "), std::string::npos);
  // A file already over the size when the log is opened is rotated at once.
  std::string full(kMax + 10, 'y');
  ASSERT_TRUE(WriteFileAtomic(path, full, Durability::kProcess).ok());
  const int saved2 = dup(STDERR_FILENO);
  ASSERT_TRUE(LogToFile(path, kMax).ok());
  ASSERT_TRUE(LogToFile("", 0).ok());
  dup2(saved2, STDERR_FILENO);
  close(saved2);
  EXPECT_EQ(FileSize(path), 0u);
  EXPECT_EQ(FileSize(path + ".1"), kMax + 10);
}

}  // namespace
}  // namespace modelfs
