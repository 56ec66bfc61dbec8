#include "tools/options.h"

#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <map>

#include "common/log.h"
#include "tests/testing/temp_dir.h"
#include "tools/status_file.h"

namespace modelfs::cli {
namespace {

// Hermetic: each test parses with its own variables (env_), never the caller's environment, and
// with config file paths inside its temporary HOME, never the machine's /etc/modelfs/config.
class OptionsTest : public ::testing::Test {
 protected:
  Status Parse(std::vector<std::string> args, MountConfig* cfg) {
    bool help = false;
    return ParseMount(args, Environment(env_), cfg, &help);
  }
  testing::TempDir home_;
  std::map<std::string, std::string> env_{{"HOME", home_.path()},
                                          {"MODELFS_SYSTEM_CONFIG", home_.Sub("no-system-config")}};
};

// The system config file is read from the path the environment names, so a test that names one in
// its temporary directory never reads the machine's.
TEST_F(OptionsTest, ConfigFilePathsComeFromTheInjectedEnvironment) {
  testing::WriteFileOrDie(home_.Sub("system.conf"), "cache-size = 3GiB\n");
  env_["MODELFS_SYSTEM_CONFIG"] = home_.Sub("system.conf");
  MountConfig cfg;
  ASSERT_TRUE(Parse({"/m"}, &cfg).ok());
  EXPECT_EQ(cfg.cache.max_bytes, 3ull << 30);
  mkdir(home_.Sub(".config").c_str(), 0700);
  mkdir(home_.Sub(".config/modelfs").c_str(), 0700);
  testing::WriteFileOrDie(home_.Sub(".config/modelfs/config"), "cache-size = 4GiB\ncache-dir = /from-file\n");
  MountConfig user;
  ASSERT_TRUE(Parse({"/m"}, &user).ok());
  EXPECT_EQ(user.cache.max_bytes, 4ull << 30);  // the user file (under the injected HOME) wins
  EXPECT_EQ(user.cache.dir, "/from-file");
  // Commands other than mount find the same cache directory (and the variable beats the file).
  EXPECT_EQ(CacheDirSetting(Environment(env_)).value(), "/from-file");
  env_["MODELFS_CACHE"] = "/from-env";
  EXPECT_EQ(CacheDirSetting(Environment(env_)).value(), "/from-env");
  env_.erase("MODELFS_CACHE");
  testing::WriteFileOrDie(home_.Sub(".config/modelfs/config"), "cache-dri = /typo\n");
  EXPECT_FALSE(CacheDirSetting(Environment(env_)).ok());
}

// Every switch with a variable reads it one way (Environment::GetBool).
TEST_F(OptionsTest, BooleanVariablesReadOneWay) {
  for (const char* var : {"HF_HUB_OFFLINE", "MODELFS_VERIFY_BEFORE_READ", "MODELFS_FILL_ON_OPEN"}) {
    for (const char* v : {"1", "true", "YES", "on"}) {
      env_[var] = v;
      MountConfig cfg;
      ASSERT_TRUE(Parse({"/m"}, &cfg).ok());
      EXPECT_TRUE(std::string(var) == "HF_HUB_OFFLINE" ? cfg.cache.offline
                  : std::string(var) == "MODELFS_FILL_ON_OPEN" ? cfg.cache.fill_on_open
                                                                : cfg.cache.verify_before_read)
          << var << "=" << v;
    }
    for (const char* v : {"0", "false", "off", ""}) {
      env_[var] = v;
      MountConfig cfg;
      ASSERT_TRUE(Parse({"/m"}, &cfg).ok());
      EXPECT_FALSE(cfg.cache.offline || cfg.cache.fill_on_open || cfg.cache.verify_before_read) << var << "=" << v;
    }
    env_.erase(var);
  }
}

TEST_F(OptionsTest, Sizes) {
  EXPECT_EQ(ParseSize("20GiB").value(), 20ull << 30);
  EXPECT_EQ(ParseSize("512MiB").value(), 512ull << 20);
  EXPECT_EQ(ParseSize("1.5G").value(), 3ull << 29);
  EXPECT_EQ(ParseSize("10GB").value(), 10000000000ull);
  EXPECT_EQ(ParseSize("4096").value(), 4096u);
  EXPECT_FALSE(ParseSize("lots").ok());
  EXPECT_FALSE(ParseSize("10XB").ok());
  EXPECT_FALSE(ParseSize("-1G").ok());
  EXPECT_FALSE(ParseSize("1e30").ok());
}

TEST_F(OptionsTest, MonitorOptions) {
  EXPECT_EQ(ParseRate("100MB/s").value(), 100000000u);
  EXPECT_EQ(ParseRate("1GiB/s").value(), 1ull << 30);
  EXPECT_EQ(ParseRate("0").value(), 0u);
  EXPECT_FALSE(ParseRate("fast").ok());
  MountConfig d;
  ASSERT_TRUE(Parse({"/mnt"}, &d).ok());
  EXPECT_EQ(d.monitor.listen, "");  // opt-in
  EXPECT_EQ(d.monitor.metrics_file, "");
  EXPECT_EQ(d.monitor.window_s, 60);
  EXPECT_EQ(d.monitor.min_success_percent, 90);
  EXPECT_EQ(d.monitor.max_bandwidth_Bps, 0u);
  EXPECT_EQ(d.monitor.status_dir, d.cache.dir + "/run");
  MountConfig c;
  ASSERT_TRUE(Parse({"--metrics-listen", "127.0.0.1:9101", "--metrics-file=/tmp/m.prom", "--alert-window", "5m",
                     "--alert-min-success-rate", "99.5%", "--alert-max-bandwidth", "100MB/s",
                     "--cache-dir", "/c", "/mnt"}, &c).ok());
  EXPECT_EQ(c.monitor.listen, "127.0.0.1:9101");
  EXPECT_EQ(c.monitor.metrics_file, "/tmp/m.prom");
  EXPECT_EQ(c.monitor.window_s, 300);
  EXPECT_EQ(c.monitor.min_success_percent, 99.5);
  EXPECT_EQ(c.monitor.max_bandwidth_Bps, 100000000u);
  EXPECT_EQ(c.monitor.status_dir, "/c/run");
  env_["MODELFS_METRICS_LISTEN"] = "[::1]:9102";
  MountConfig e;
  ASSERT_TRUE(Parse({"/mnt"}, &e).ok());
  EXPECT_EQ(e.monitor.listen, "[::1]:9102");
  env_.erase("MODELFS_METRICS_LISTEN");
  MountConfig bad;
  EXPECT_FALSE(Parse({"--metrics-listen", ":9101", "/mnt"}, &bad).ok());  // host must be explicit
  EXPECT_FALSE(Parse({"--alert-min-success-rate", "90", "/mnt"}, &bad).ok());
  EXPECT_FALSE(Parse({"--alert-max-bandwidth", "lots", "/mnt"}, &bad).ok());
  EXPECT_FALSE(Parse({"--alert-window", "0", "/mnt"}, &bad).ok());
}

TEST_F(OptionsTest, MemoryBudgetSizesChunkBuffers) {
  MountConfig d;
  ASSERT_TRUE(Parse({"/mnt"}, &d).ok());
  // 192 MiB: 12 reads of 6 MiB (reply, block buffer, a chunk of their own), then 30 chunks, 3/4
  // in flight.
  EXPECT_EQ(d.mount.reply_buffers, 12u);
  EXPECT_EQ(d.cache.max_network_reads, 12u);
  EXPECT_EQ(d.cache.max_inflight_chunks, 22u);
  EXPECT_EQ(d.cache.max_spill_chunks, 7u);
  MountConfig e;
  ASSERT_TRUE(Parse({"--memory-budget", "32MiB", "/mnt"}, &e).ok());
  EXPECT_EQ(e.mount.reply_buffers, 4u);  // the floor
  EXPECT_EQ(e.cache.max_network_reads, 4u);
  EXPECT_EQ(e.cache.max_inflight_chunks, 4u);
  EXPECT_EQ(e.cache.max_spill_chunks, 2u);
  MountConfig big;
  ASSERT_TRUE(Parse({"--memory-budget", "1GiB", "/mnt"}, &big).ok());
  EXPECT_EQ(big.mount.reply_buffers, 64u);  // the cap
  EXPECT_EQ(big.cache.max_inflight_chunks, 120u);
  EXPECT_EQ(big.cache.max_spill_chunks, 40u);
  MountConfig tiny;
  ASSERT_TRUE(Parse({"--memory-budget", "1MiB", "/mnt"}, &tiny).ok());
  EXPECT_EQ(tiny.cache.max_inflight_chunks, 4u);  // floors
  EXPECT_EQ(tiny.cache.max_spill_chunks, 2u);
  MountConfig bad;
  EXPECT_FALSE(Parse({"--memory-budget", "lots", "/mnt"}, &bad).ok());
  EXPECT_FALSE(d.cache.fill_on_open);
  EXPECT_FALSE(d.cache.verify_before_read);
  MountConfig f;
  ASSERT_TRUE(Parse({"--fill-on-open", "--verify-before-read", "/mnt"}, &f).ok());
  EXPECT_TRUE(f.cache.fill_on_open);
  EXPECT_TRUE(f.cache.verify_before_read);
}

TEST_F(OptionsTest, RepoArguments) {
  std::string rev;
  auto r = ParseRepoArg("org/name@v1.0", &rev);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->Id(), "org/name");
  EXPECT_EQ(rev, "v1.0");
  r = ParseRepoArg("datasets/org/data", &rev);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->type, "dataset");
  EXPECT_EQ(rev, "");
  EXPECT_FALSE(ParseRepoArg("noslash", &rev).ok());
  EXPECT_FALSE(ParseRepoArg("a/b/c", &rev).ok());
  EXPECT_FALSE(ParseRepoArg("../x", &rev).ok());
  EXPECT_FALSE(ParseRepoArg("org/name@", &rev).ok());
}

TEST_F(OptionsTest, DefaultsAndPrecedence) {
  MountConfig cfg;
  ASSERT_TRUE(Parse({"/mnt/x"}, &cfg).ok());
  EXPECT_EQ(cfg.fetch.endpoint, "https://huggingface.co");
  EXPECT_EQ(cfg.cache.dir, home_.path() + "/.cache/modelfs");
  EXPECT_EQ(cfg.cache.max_bytes, 20ull << 30);
  EXPECT_EQ(cfg.fetch.token, "");
  EXPECT_FALSE(cfg.mount.foreground);
  EXPECT_EQ(cfg.log_file, cfg.cache.dir + "/modelfs.log");

  env_["HF_ENDPOINT"] = "http://mirror.local:8080///";
  MountConfig env_cfg;
  ASSERT_TRUE(Parse({"-f", "/mnt/x"}, &env_cfg).ok());
  EXPECT_EQ(env_cfg.fetch.endpoint, "http://mirror.local:8080");
  EXPECT_TRUE(env_cfg.mount.foreground);
  EXPECT_EQ(env_cfg.log_file, "");

  MountConfig flag_cfg;
  ASSERT_TRUE(Parse({"--endpoint=http://127.0.0.1:9", "--cache-size", "1GiB", "org/m@main", "/mnt/x"}, &flag_cfg).ok());
  EXPECT_EQ(flag_cfg.fetch.endpoint, "http://127.0.0.1:9");
  EXPECT_EQ(flag_cfg.cache.max_bytes, 1ull << 30);
  ASSERT_TRUE(flag_cfg.fs.single_repo.has_value());
  EXPECT_EQ(flag_cfg.fs.single_repo->Id(), "org/m");
  EXPECT_EQ(flag_cfg.fs.single_rev, "main");
}

TEST_F(OptionsTest, TokenSources) {
  std::string hf_home = home_.Sub("hf");
  mkdir(hf_home.c_str(), 0700);
  testing::WriteFileOrDie(hf_home + "/token", "  hf_fromfile\r\n");
  env_["HF_HOME"] = hf_home;
  MountConfig a;
  ASSERT_TRUE(Parse({"/m"}, &a).ok());
  EXPECT_EQ(a.fetch.token, "hf_fromfile");
  env_["HF_TOKEN"] = "hf_fromenv\n";
  MountConfig b;
  ASSERT_TRUE(Parse({"/m"}, &b).ok());
  EXPECT_EQ(b.fetch.token, "hf_fromenv");
  env_.erase("HF_TOKEN");
  testing::WriteFileOrDie(home_.Sub("explicit"), "hf_explicit");
  MountConfig c;
  ASSERT_TRUE(Parse({"--token-file", home_.Sub("explicit"), "/m"}, &c).ok());
  EXPECT_EQ(c.fetch.token, "hf_explicit");
  MountConfig d;
  EXPECT_FALSE(Parse({"--token-file", home_.Sub("missing"), "/m"}, &d).ok());
}

TEST_F(OptionsTest, BadInputIsAClearError) {
  MountConfig cfg;
  EXPECT_FALSE(Parse({}, &cfg).ok());
  EXPECT_FALSE(Parse({"--bogus", "/m"}, &cfg).ok());
  EXPECT_FALSE(Parse({"--endpoint", "ftp://x", "/m"}, &cfg).ok());
  EXPECT_FALSE(Parse({"--cache-size", "big", "/m"}, &cfg).ok());
  EXPECT_FALSE(Parse({"--threads", "0", "/m"}, &cfg).ok());
  EXPECT_FALSE(Parse({"--cache-size"}, &cfg).ok());
  EXPECT_FALSE(Parse({"a", "b", "c"}, &cfg).ok());
  bool help = false;
  EXPECT_TRUE(ParseMount({"--help"}, Environment(env_), &cfg, &help).ok());
  EXPECT_TRUE(help);
}

// The README's option table agrees with the one in tools/mount_option_table.cc, row by row: the
// flag and its value name, the variable, and the default; and --help shows each option.
TEST_F(OptionsTest, ReadmeAndHelpAgreeWithTheTable) {
  const std::string readme = testing::ReadFileOrDie(std::string(MODELFS_SOURCE_DIR) + "/README.md");
  ASSERT_FALSE(readme.empty());
  auto cells = [](const std::string& row) {
    std::vector<std::string> out;
    size_t a = row.find('|');
    while (a != std::string::npos) {
      size_t b = row.find('|', a + 1);
      if (b == std::string::npos) break;
      std::string c = row.substr(a + 1, b - a - 1);
      c.erase(0, c.find_first_not_of(' '));
      c.erase(c.find_last_not_of(' ') + 1);
      out.push_back(c);
      a = b;
    }
    return out;
  };
  auto unquoted = [](std::string t) {
    t.erase(std::remove(t.begin(), t.end(), '`'), t.end());
    return t;
  };
  const std::string help = MountHelp();
  for (const auto& o : MountOptionTable()) {
    const std::string start = std::string("\n| `") + o.flag;
    const size_t at = readme.find(start + (o.value_name ? " " : "`"));
    ASSERT_NE(at, std::string::npos) << o.flag << " has no row in README's option table";
    const std::vector<std::string> row = cells(readme.substr(at + 1, readme.find('\n', at + 1) - at - 1));
    ASSERT_GE(row.size(), 4u) << o.flag;
    std::string flag_cell = std::string("`") + o.flag + (o.value_name ? std::string(" ") + o.value_name : "") + "`";
    if (o.short_flag) flag_cell += std::string(", `") + o.short_flag + "`";
    EXPECT_EQ(row[0], flag_cell);
    if (o.env) {
      EXPECT_NE(row[1].find(std::string("`") + o.env + "`"), std::string::npos) << o.flag << ": " << row[1];
    } else {
      EXPECT_EQ(row[1], "") << o.flag;
    }
    EXPECT_EQ(unquoted(row[2]).rfind(o.default_text, 0), 0u) << o.flag << ": README says " << row[2];
    EXPECT_NE(help.find(o.flag), std::string::npos) << o.flag;
    if (o.env) {
      EXPECT_NE(help.find(o.env), std::string::npos) << o.env;
    }
  }
}

// Every option of the table is wired: a value option either has `apply` or is one ParseMount reads
// itself, and every default marked as a value is one its own `apply` takes.
TEST_F(OptionsTest, EveryOptionIsWiredAndEveryDefaultParses) {
  for (const auto& o : MountOptionTable()) {
    const std::string flag = o.flag;
    if (!o.apply) {
      EXPECT_TRUE(flag == "--endpoint" || flag == "--token-file" || flag == "--help") << flag << " is not applied";
      continue;
    }
    if (o.default_is_value) {
      MountConfig c;
      EXPECT_TRUE(o.apply(o.default_text, &c).ok()) << flag << " default " << o.default_text;
    }
  }
}

// Each default is written once, in the table; the structs' own defaults (which tests and other
// callers of the layers use) must say the same. So applying an option's default to a plain
// MountConfig changes nothing, nor does a switch left off; a new field or a changed number on
// either side fails here. Two differences are deliberate: a bare CacheOptions has no quota and no
// free-space floor, a mount has 20GiB and 10%.
TEST_F(OptionsTest, EveryTableDefaultIsTheStructDefault) {
  const MountConfig plain;
  for (const OptionSpec& o : MountOptionTable()) {
    const std::string flag = o.flag;
    MountConfig c;
    if (o.apply && o.default_is_value) {
      ASSERT_TRUE(o.apply(o.default_text, &c).ok()) << flag;
    } else if (o.apply && !o.value_name) {
      ASSERT_TRUE(o.apply("", &c).ok()) << flag;  // a switch: off
    } else {
      continue;  // default_text describes what no value means (off, a path computed at parse)
    }
    if (flag == "--cache-size") {
      EXPECT_EQ(c.cache.max_bytes, 20ull << 30);
      c.cache.max_bytes = plain.cache.max_bytes;
    }
    if (flag == "--cache-min-free") {
      EXPECT_EQ(c.cache.min_free_percent, 10.0);
      c.cache.min_free_percent = plain.cache.min_free_percent;
    }
    EXPECT_TRUE(c.fetch == plain.fetch) << flag << " " << o.default_text << " is not FetchOptions' default";
    EXPECT_TRUE(c.cache == plain.cache) << flag << " " << o.default_text << " is not CacheOptions' default";
    EXPECT_TRUE(c.mount == plain.mount) << flag << " " << o.default_text << " is not MountOptions' default";
    EXPECT_TRUE(c.fs == plain.fs) << flag << " " << o.default_text << " is not FsOptions' default";
    EXPECT_TRUE(c.monitor == plain.monitor) << flag << " " << o.default_text << " is not MonitorOptions' default";
    EXPECT_TRUE(c == plain) << flag << " " << o.default_text << " is not MountConfig's default";
  }
  // --endpoint has no `apply` (ParseMount builds the mirror list): its default is the struct's too.
  EXPECT_EQ(FindOption(MountOptionTable(), "--endpoint")->default_text, plain.fetch.endpoint);
}

// Parsing with no flag, no variable and no config file gives exactly the structs' defaults (with
// the mount's quota and floor), plus what a mount computes from where it runs.
TEST_F(OptionsTest, ParsingNothingGivesTheStructDefaults) {
  MountConfig parsed;
  ASSERT_TRUE(Parse({"/m"}, &parsed).ok());
  MountConfig want;
  want.cache.max_bytes = 20ull << 30;
  want.cache.min_free_percent = 10;
  // Computed, not defaults: the places under $HOME and the cache directory, the mirror list, the
  // reserve for the files the daemon writes there, who owns the inodes.
  want.mount.mountpoint = "/m";
  want.cache.dir = home_.path() + "/.cache/modelfs";
  want.fetch.endpoints = {want.fetch.endpoint};
  want.log_file = want.cache.dir + "/modelfs.log";
  want.cache.reserved_bytes = kStatusDiskBound + LogDiskBound(want.log_max_bytes);
  want.monitor.status_dir = want.cache.dir + "/run";
  want.monitor.mountpoint = "/m";
  want.fs.uid = getuid();
  want.fs.gid = getgid();
  EXPECT_TRUE(parsed.fetch == want.fetch);
  EXPECT_TRUE(parsed.cache == want.cache);
  EXPECT_TRUE(parsed.mount == want.mount);
  EXPECT_TRUE(parsed.fs == want.fs);
  EXPECT_TRUE(parsed.monitor == want.monitor);
  EXPECT_TRUE(parsed == want);
}

// A bad value says which option and where it came from.
TEST_F(OptionsTest, BadValuesNameTheirOptionAndSource) {
  testing::WriteFileOrDie(home_.Sub("system.conf"), "retries = lots\n");
  env_["MODELFS_SYSTEM_CONFIG"] = home_.Sub("system.conf");
  MountConfig cfg;
  Status s = Parse({"/m"}, &cfg);
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.message().find("--retries (from " + home_.Sub("system.conf") + ":1)"), std::string::npos) << s.message();
  env_["MODELFS_CACHE_SIZE"] = "huge";
  s = Parse({"--retries", "2", "/m"}, &cfg);
  EXPECT_NE(s.message().find("--cache-size (from MODELFS_CACHE_SIZE)"), std::string::npos) << s.message();
  s = Parse({"--retries", "99", "--cache-size", "1GiB", "/m"}, &cfg);
  EXPECT_NE(s.message().find("--retries: "), std::string::npos) << s.message();
}

TEST(ParseArgsTest, OneTokenizerForEveryCommand) {
  const std::vector<OptionSpec> table = {
      {"--name", nullptr, nullptr, "X", "", ""}, {"--on", "-o", nullptr, nullptr, "", ""}};
  auto p = ParseArgs({"a", "--name", "1", "--name=2", "-o", "-", "b"}, table, "cmd");
  ASSERT_TRUE(p.ok()) << p.status().ToString();
  EXPECT_EQ(p->values.at("--name"), (std::vector<std::string>{"1", "2"}));
  EXPECT_EQ(*p->Last("--name"), "2");
  EXPECT_TRUE(p->Has("--on"));
  EXPECT_EQ(p->positional, (std::vector<std::string>{"a", "-", "b"}));
  EXPECT_FALSE(ParseArgs({"--bogus"}, table, "cmd").ok());
  EXPECT_NE(ParseArgs({"--bogus"}, table, "cmd").status().message().find("cmd --help"), std::string::npos);
  EXPECT_FALSE(ParseArgs({"--name"}, table, "cmd").ok());     // no value
  EXPECT_FALSE(ParseArgs({"--on=1"}, table, "cmd").ok());     // a switch takes none
  EXPECT_EQ(ParseArgs({}, table, "cmd")->Last("--name"), nullptr);
}

}  // namespace
}  // namespace modelfs::cli
