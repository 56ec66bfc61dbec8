// tools/status_file.h: status file names, the sweep of dead daemons' files, the size bound of the
// status text, and a rewritten file's writes.
#include "tools/status_file.h"

#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "tests/testing/temp_dir.h"

namespace modelfs::cli {
namespace {

TEST(StatusFileTest, NamesRoundTrip) {
  EXPECT_EQ(StatusFileName(123), "status-123.json");
  EXPECT_EQ(StatusFilePid("status-123.json"), 123);
  EXPECT_EQ(StatusFilePid("status-123.json.tmp.5"), 0);
  EXPECT_EQ(StatusFilePid("status-0123.json"), 0);
  EXPECT_EQ(StatusFilePid("status.json"), 0);
}

// Files of dead pids go; this process's, a live pid's and other files stay.
TEST(StatusFileTest, RemoveDeadStatusFilesKeepsLiveOnes) {
  testing::TempDir dir("modelfs-status-sweep");
  pid_t dead = fork();
  if (dead == 0) _exit(0);
  waitpid(dead, nullptr, 0);
  const std::string d = dir.path();
  for (const std::string& name : {StatusFileName(dead), StatusFileName(getpid()), StatusFileName(1),
                                  std::string("other.json")})
    testing::WriteFileOrDie(d + "/" + name, "{}");
  RemoveDeadStatusFiles(d);
  struct stat st;
  EXPECT_NE(stat((d + "/" + StatusFileName(dead)).c_str(), &st), 0);
  EXPECT_EQ(stat((d + "/" + StatusFileName(getpid())).c_str(), &st), 0);
  EXPECT_EQ(stat((d + "/" + StatusFileName(1)).c_str(), &st), 0);
  EXPECT_EQ(stat((d + "/other.json").c_str(), &st), 0);
  RemoveDeadStatusFiles(d + "/missing");  // no directory: nothing to do
}

// A status within the bound is written indented and whole; past it the transfers go first, then
// the indentation; a status that still does not fit becomes an error line.
TEST(StatusFileTest, StatusTextIsHeldToItsBound) {
  nlohmann::json j;
  j["pid"] = 7;
  j["transfers"] = nlohmann::json::array({{{"file", "a"}}});
  std::string small = StatusText(j);
  EXPECT_EQ(nlohmann::json::parse(small), j);
  EXPECT_NE(small.find("\n  \""), std::string::npos) << small;  // indented
  for (int i = 0; i < 2000; ++i) j["transfers"].push_back({{"file", std::string(40, 'x')}});
  std::string dropped = StatusText(j);
  EXPECT_LE(dropped.size(), kStatusFileMax);
  nlohmann::json d = nlohmann::json::parse(dropped);
  EXPECT_TRUE(d["transfers"].empty());
  EXPECT_EQ(d["transfers_dropped"], 2001);
  EXPECT_EQ(d["pid"], 7);
  j["huge"] = std::string(kStatusFileMax, 'y');
  EXPECT_EQ(StatusText(j), "{\"error\":\"status larger than its bound\"}\n");
}

// A rewritten file is replaced whole with its mode; a failed write leaves no file and is retried
// at the next one.
TEST(StatusFileTest, RewrittenFileReplacesTheFileWhole) {
  testing::TempDir dir("modelfs-status-write");
  RewrittenFile f(dir.Sub("status.json"), 0600);
  f.Write("one");
  f.Write("two");
  EXPECT_EQ(testing::ReadFileOrDie(f.path()), "two");
  struct stat st;
  ASSERT_EQ(stat(f.path().c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  RewrittenFile nowhere(dir.Sub("missing/status.json"), 0600);
  nowhere.Write("x");  // logged, not thrown
  nowhere.Write("y");  // failing still: not logged again
  EXPECT_NE(stat(nowhere.path().c_str(), &st), 0);
  ASSERT_EQ(mkdir(dir.Sub("missing").c_str(), 0700), 0);
  nowhere.Write("z");
  EXPECT_EQ(testing::ReadFileOrDie(nowhere.path()), "z");
}

}  // namespace
}  // namespace modelfs::cli
