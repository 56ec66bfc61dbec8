// `modelfs download` argument parsing and glob selection (the copy itself is tested end to end in
// tests/integration/download_test.cc).
#include "tools/cmd_download.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "tests/testing/temp_dir.h"

namespace modelfs::cli {
namespace {

// No caller's variables and no config file: HOME (and so the user config and token paths) and the
// system config path name nothing that exists.
Environment NoEnv() {
  return Environment({{"HOME", "/nonexistent-modelfs-home"},
                      {"MODELFS_SYSTEM_CONFIG", "/nonexistent-modelfs-home/system-config"}});
}

TEST(SelectedByGlobs, LikeHfDownload) {
  const std::vector<std::string> none;
  EXPECT_TRUE(SelectedByGlobs("a/b.bin", none, none));
  EXPECT_TRUE(SelectedByGlobs("config.json", {"*.json"}, none));
  EXPECT_TRUE(SelectedByGlobs("sub/x.json", {"*.json"}, none));  // '*' crosses '/' (fnmatch)
  EXPECT_FALSE(SelectedByGlobs("model.safetensors", {"*.json"}, none));
  EXPECT_TRUE(SelectedByGlobs("original/w.pt", {"original/"}, none));  // trailing '/' = subtree
  EXPECT_FALSE(SelectedByGlobs("originally.pt", {"original/"}, none));
  EXPECT_FALSE(SelectedByGlobs("original/w.pt", none, {"original/*"}));
  EXPECT_FALSE(SelectedByGlobs("a.json", {"*.json"}, {"a.*"}));  // exclude wins
  EXPECT_TRUE(SelectedByGlobs("b.json", {"*.json", "*.txt"}, {"a.*"}));
  EXPECT_TRUE(SelectedByGlobs("model-00001-of-00002.safetensors", {"model-0000[1-2]-*"}, none));
}

TEST(ParseDownload, Basics) {
  DownloadConfig c;
  bool help = false;
  Status s = ParseDownload({"datasets/acme/squad@v1", "--local-dir", "/tmp/x", "--include",
                            "*.json", "--include=*.txt", "--exclude", "a*", "--endpoint",
                            "http://127.0.0.1:9/", "--cache-dir", "/tmp/c", "--format", "json", "-q"},
                           NoEnv(), &c, &help);
  ASSERT_TRUE(s.ok()) << s.ToString();
  EXPECT_FALSE(help);
  EXPECT_EQ(c.repo.type, "dataset");
  EXPECT_EQ(c.repo.Id(), "acme/squad");
  EXPECT_EQ(c.rev, "v1");
  EXPECT_EQ(c.local_dir, "/tmp/x");
  EXPECT_EQ(c.include, (std::vector<std::string>{"*.json", "*.txt"}));
  EXPECT_EQ(c.exclude, (std::vector<std::string>{"a*"}));
  EXPECT_EQ(c.base.fetch.endpoint, "http://127.0.0.1:9");  // same rules as mount
  EXPECT_EQ(c.base.cache.dir, "/tmp/c");
  EXPECT_EQ(c.base.log_level, "warn");  // quiet by default: logs would tear the progress bar
  EXPECT_TRUE(c.json);
  EXPECT_TRUE(c.quiet);
}

// Without --cache-dir, download caches where a mount would: the config file's cache-dir.
TEST(ParseDownload, HonoursTheConfigFilesCacheDir) {
  modelfs::testing::TempDir home;
  modelfs::testing::WriteFileOrDie(home.Sub("config"), "cache-dir = " + home.Sub("cache") + "\n");
  DownloadConfig c;
  bool help = false;
  Status s = ParseDownload({"acme/m", "--local-dir", home.Sub("out")},
                           Environment({{"HOME", home.path()},
                                        {"MODELFS_SYSTEM_CONFIG", home.Sub("no-system-config")},
                                        {"MODELFS_CONFIG", home.Sub("config")}}),
                           &c, &help);
  ASSERT_TRUE(s.ok()) << s.ToString();
  EXPECT_EQ(c.base.cache.dir, home.Sub("cache"));
}

TEST(ParseDownload, UsageErrors) {
  bool help = false;
  for (const std::vector<std::string>& args : std::vector<std::vector<std::string>>{
           {"acme/tiny"},                                          // no --local-dir
           {"--local-dir", "/tmp/x"},                              // no repo
           {"acme/tiny", "acme/other", "--local-dir", "/tmp/x"},   // two repos
           {"acme/tiny", "--local-dir", "/tmp/x", "--format", "yaml"},
           {"acme/tiny", "--local-dir", "/tmp/x", "--allow-other"},  // a mount-only flag
           {"acme/tiny", "--local-dir"},
           {"acme/tiny", "--local-dir", "/tmp/x", "--quiet=yes"},
           {"not-a-repo", "--local-dir", "/tmp/x"},
           {"acme/tiny", "--local-dir", "/tmp/x", "--cache-size", "lots"}}) {
    DownloadConfig c;
    Status s = ParseDownload(args, NoEnv(), &c, &help);
    EXPECT_FALSE(s.ok()) << ::testing::PrintToString(args);
    EXPECT_FALSE(help);
  }
  DownloadConfig c;
  EXPECT_TRUE(ParseDownload({"--help"}, NoEnv(), &c, &help).ok());
  EXPECT_TRUE(help);
}

TEST(DownloadHelp, ListsEveryOptionAndExitCodes) {
  const std::string h = DownloadHelp();
  for (const OptionSpec& o : DownloadOptionTable()) {
    EXPECT_NE(h.find(o.flag), std::string::npos) << o.flag;
  }
  EXPECT_NE(h.find("Exit codes"), std::string::npos);
  EXPECT_NE(h.find("--endpoint"), std::string::npos);  // forwarded from the mount table
}

}  // namespace
}  // namespace modelfs::cli
