// Config layers (tools/config_file.h), their use by ParseMount, and `modelfs config show`.
#include "tools/config_file.h"

#include <gtest/gtest.h>

#include <fstream>
#include <map>

#include "tests/testing/temp_dir.h"
#include "tools/cmd_config.h"
#include "tools/options.h"

namespace modelfs::cli {
namespace {

// Hermetic: variables come from env_ (never the caller's environment), and the two config file
// paths point into the test's temporary directory.
class ConfigFileTest : public ::testing::Test {
 protected:
  Environment Env() const { return Environment(env_); }
  void Write(const std::string& path, const std::string& text) { std::ofstream(path) << text; }
  std::vector<std::string> Endpoints(std::vector<std::string> flags = {}) {
    auto layers = LoadConfigLayers(ConfigKeys(), Env());
    EXPECT_TRUE(layers.ok()) << layers.status().ToString();
    auto eps = EffectiveEndpoints(layers.value(), flags, Env());
    EXPECT_TRUE(eps.ok()) << eps.status().ToString();
    std::vector<std::string> out;
    for (const auto& e : eps.value()) out.push_back(e.value + " <" + e.origin + ">");
    return out;
  }
  testing::TempDir dir_;
  std::string sys_ = dir_.path() + "/system.conf", user_ = dir_.path() + "/user.conf";
  std::map<std::string, std::string> env_{
      {"HOME", dir_.path()}, {"MODELFS_SYSTEM_CONFIG", sys_}, {"MODELFS_CONFIG", user_}};
};

TEST_F(ConfigFileTest, DefaultWithoutAnything) {
  EXPECT_EQ(Endpoints(), std::vector<std::string>{"https://huggingface.co <default>"});
}

TEST_F(ConfigFileTest, LayersOverrideInOrder) {
  Write(sys_, "# company defaults\nendpoint = http://sys-a/\n\nendpoint=http://sys-b\ncache-size = 1GiB\n");
  EXPECT_EQ(Endpoints(), (std::vector<std::string>{"http://sys-a <" + sys_ + ":2>", "http://sys-b <" + sys_ + ":4>"}));
  Write(user_, "endpoint = http://user\n");
  EXPECT_EQ(Endpoints(), std::vector<std::string>{"http://user <" + user_ + ":1>"});
  env_["HF_ENDPOINT"] = "http://env";
  env_["MODELFS_MIRRORS"] = "http://m1, http://m2 http://env";
  EXPECT_EQ(Endpoints(), (std::vector<std::string>{"http://env <HF_ENDPOINT>", "http://m1 <MODELFS_MIRRORS>",
                                                   "http://m2 <MODELFS_MIRRORS>"}));
  EXPECT_EQ(Endpoints({"http://f1", "http://f2"}),
            (std::vector<std::string>{"http://f1 <--endpoint>", "http://f2 <--endpoint>"}));
}

TEST_F(ConfigFileTest, ErrorsNameFileAndLine) {
  Write(user_, "endpoint = http://ok\ncahce-size = 1G\n");
  auto l = LoadConfigLayers(ConfigKeys(), Env());
  ASSERT_FALSE(l.ok());
  EXPECT_NE(l.status().message().find(user_ + ":2"), std::string::npos) << l.status().ToString();
  Write(user_, "just words\n");
  EXPECT_FALSE(LoadConfigLayers(ConfigKeys(), Env()).ok());
  Write(user_, "endpoint = ftp://x\n");
  auto layers = LoadConfigLayers(ConfigKeys(), Env());
  ASSERT_TRUE(layers.ok());
  auto eps = EffectiveEndpoints(layers.value(), {}, Env());
  ASSERT_FALSE(eps.ok());
  EXPECT_NE(eps.status().message().find(user_ + ":1"), std::string::npos);
}

TEST_F(ConfigFileTest, ParseMountUsesTheLayers) {
  Write(sys_, "endpoint = http://a\nendpoint = http://b\nretries = 7\ncache-size = 3GiB\nmirror-retry = 42\n");
  MountConfig cfg;
  bool help = false;
  ASSERT_TRUE(ParseMount({"/mnt"}, Env(), &cfg, &help).ok());
  EXPECT_EQ(cfg.fetch.endpoints, (std::vector<std::string>{"http://a", "http://b"}));
  EXPECT_EQ(cfg.fetch.endpoint, "http://a");
  EXPECT_EQ(cfg.fetch.max_retries, 7);
  EXPECT_EQ(cfg.fetch.mirror_retry_after_s, 42);
  EXPECT_EQ(cfg.cache.max_bytes, 3ull << 30);
  // Environment beats the file; flags beat both.
  env_["MODELFS_CACHE_SIZE"] = "2GiB";
  MountConfig c2;
  ASSERT_TRUE(ParseMount({"--endpoint", "http://x", "--endpoint=http://y", "--retries", "1", "/mnt"}, Env(), &c2, &help).ok());
  env_.erase("MODELFS_CACHE_SIZE");
  EXPECT_EQ(c2.fetch.endpoints, (std::vector<std::string>{"http://x", "http://y"}));
  EXPECT_EQ(c2.fetch.max_retries, 1);
  EXPECT_EQ(c2.cache.max_bytes, 2ull << 30);
  // TLS options.
  MountConfig c3;
  EXPECT_FALSE(ParseMount({"--tls-min-version", "1.1", "/mnt"}, Env(), &c3, &help).ok());
  EXPECT_FALSE(ParseMount({"--ca-file", dir_.path() + "/missing.pem", "/mnt"}, Env(), &c3, &help).ok());
  ASSERT_TRUE(ParseMount({"--tls-min-version", "1.3", "--ca-file", sys_, "/mnt"}, Env(), &c3, &help).ok());
  EXPECT_EQ(c3.fetch.tls_min_version, "1.3");
  EXPECT_EQ(c3.fetch.ca_file, sys_);
  // A broken file fails the mount with its location.
  Write(user_, "bogus-key = 1\n");
  MountConfig c4;
  Status s = ParseMount({"/mnt"}, Env(), &c4, &help);
  EXPECT_FALSE(s.ok());
  EXPECT_NE(s.message().find("bogus-key"), std::string::npos);
}

TEST_F(ConfigFileTest, ConfigShowPrintsValuesAndOrigins) {
  Write(sys_, "endpoint = http://a\nmirror-retry = 60\ncache-dir = /srv/modelfs\n");
  env_["MODELFS_MIRRORS"] = "http://m1";
  std::string out, err;
  ASSERT_EQ(ConfigCommand({"show"}, Env(), &out, &err), 0) << err;
  EXPECT_NE(out.find("http://m1    [MODELFS_MIRRORS]"), std::string::npos) << out;
  EXPECT_EQ(out.find("http://a"), std::string::npos) << out;  // replaced by the environment
  EXPECT_NE(out.find("mirror-retry = 60    [" + sys_ + ":2]"), std::string::npos) << out;
  EXPECT_NE(out.find("cache-dir = /srv/modelfs    [" + sys_ + ":3]"), std::string::npos) << out;
  EXPECT_NE(out.find("tls-min-version = 1.2    [default]"), std::string::npos) << out;
  EXPECT_NE(out.find(sys_ + " (read)"), std::string::npos) << out;
  out.clear();
  ASSERT_EQ(ConfigCommand({"show", "--endpoint", "http://f", "--retries=2"}, Env(), &out, &err), 0) << err;
  EXPECT_NE(out.find("http://f    [--endpoint]"), std::string::npos) << out;
  EXPECT_NE(out.find("retries = 2    [--retries]"), std::string::npos) << out;
  // The token's value is never printed.
  env_["HF_TOKEN"] = "hf_secret_value";
  out.clear();
  ASSERT_EQ(ConfigCommand({"show"}, Env(), &out, &err), 0);
  env_.erase("HF_TOKEN");
  EXPECT_EQ(out.find("hf_secret_value"), std::string::npos) << out;
  EXPECT_EQ(ConfigCommand({"frobnicate"}, Env(), &out, &err), 2);
  EXPECT_EQ(ConfigCommand({"show", "--nope", "1"}, Env(), &out, &err), 2);
}

}  // namespace
}  // namespace modelfs::cli
