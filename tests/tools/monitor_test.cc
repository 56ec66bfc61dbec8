// tools/monitor.h: the monitor writing its status and metrics files atomically, serving /status,
// and what `modelfs status` makes of the files. Its rooms have their own tests: alerts_test.cc,
// metrics_server_test.cc, status_file_test.cc, stats_sampler_test.cc.
#include "tools/monitor.h"

#include <poll.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "tests/testing/fake_hub_process.h"
#include "tools/cmd_cache.h"
#include "tests/testing/temp_dir.h"

namespace modelfs::cli {
namespace {

// The status command's variables: none of the caller's, and no config file (it is given --cache-dir).
Environment NoEnv() {
  return Environment({{"HOME", "/nonexistent-modelfs-home"},
                      {"MODELFS_SYSTEM_CONFIG", "/nonexistent-modelfs-home/system-config"}});
}

// ---- Monitor (no engine: the status and metrics files, the listener's /status).

TEST(MonitorTest, WritesStatusAndMetricsFilesAtomicallyAndServesStatus) {
  testing::TempDir dir("modelfs-monitor");
  MetricsRegistry registry;
  MonitorOptions o;
  o.listen = "127.0.0.1:0";
  o.metrics_file = dir.Sub("modelfs.prom");
  o.status_dir = dir.Sub("run");
  // A status file left by a daemon that died (a pid that no longer exists) is cleaned up.
  mkdir(o.status_dir.c_str(), 0700);
  pid_t dead = fork();
  if (dead == 0) _exit(0);
  waitpid(dead, nullptr, 0);
  const std::string stale = o.status_dir + "/" + StatusFileName(dead);
  testing::WriteFileOrDie(stale, "{}");
  const std::string status_file = o.status_dir + "/" + StatusFileName(getpid());
  o.mountpoint = "/mnt/x";
  o.interval_ms = 50;
  o.max_bandwidth_Bps = 1;  // enabled: its gauge must appear
  auto m = Monitor::Start(o, &registry, nullptr, nullptr);
  ASSERT_TRUE(m.ok()) << m.status().ToString();
  EXPECT_EQ((*m)->status_file(), status_file);
  struct stat st;
  EXPECT_NE(stat(stale.c_str(), &st), 0) << "stale status file kept";
  ASSERT_EQ(stat(status_file.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  nlohmann::json j = nlohmann::json::parse(testing::ReadFileOrDie(status_file));
  EXPECT_EQ(j["pid"], getpid());
  EXPECT_EQ(j["mountpoint"], "/mnt/x");
  EXPECT_EQ(j["metrics_listen"], (*m)->server()->address());
  EXPECT_TRUE(j["transfers"].is_array());
  ASSERT_EQ(j["alerts"].size(), 2u);
  // The file is rewritten each interval (50 ms): the test waits for that event, the rename of the
  // new status into run/ (inotify IN_MOVED_TO; nothing else is renamed there), neither polling
  // nor sleeping for a time a loaded machine may not give the monitor's thread.
  const double first = j["updated_unix"];
  const int in = inotify_init1(IN_CLOEXEC);
  ASSERT_GE(in, 0);
  ASSERT_GE(inotify_add_watch(in, o.status_dir.c_str(), IN_MOVED_TO), 0);
  bool renamed = false;
  while (!renamed) {
    pollfd p{in, POLLIN, 0};
    ASSERT_EQ(poll(&p, 1, 10000), 1) << "the status file was not rewritten within 10 s";
    alignas(inotify_event) char buf[4096];
    const ssize_t n = read(in, buf, sizeof buf);
    ASSERT_GT(n, 0);
    for (ssize_t off = 0; off < n;) {
      const auto* ev = reinterpret_cast<const inotify_event*>(buf + off);
      renamed = renamed || (ev->len > 0 && StatusFileName(getpid()) == ev->name);
      off += static_cast<ssize_t>(sizeof(inotify_event) + ev->len);
    }
  }
  close(in);
  // Written after the watch began, so by a later sample than the one read above.
  j = nlohmann::json::parse(testing::ReadFileOrDie(status_file));
  EXPECT_GT(j["updated_unix"].get<double>(), first);
  const std::string prom = testing::ReadFileOrDie(o.metrics_file);
  EXPECT_NE(prom.find("modelfs_alert_active{alert=\"high_bandwidth\"} 0\n"), std::string::npos) << prom;
  EXPECT_NE(prom.find("# TYPE modelfs_window_success_ratio gauge\n"), std::string::npos);
  testing::LocalHttpResponse resp;
  ASSERT_TRUE(testing::LocalHttp((*m)->server()->port(), "GET", "/status", "", &resp));
  EXPECT_EQ(resp.status, 200);
  EXPECT_EQ(nlohmann::json::parse(resp.body)["pid"], getpid());
  // No temporary files are left beside them.
  int entries = 0;
  for (const char* d : {"", "/run"}) {
    std::string out;
    FILE* p = popen(("ls -A " + dir.path() + d).c_str(), "r");
    char buf[256];
    while (fgets(buf, sizeof buf, p)) {
      out += buf;
      entries++;
    }
    pclose(p);
    EXPECT_EQ(out.find(".tmp"), std::string::npos) << out;
  }
  EXPECT_EQ(entries, 3);  // modelfs.prom, run, run/status-<pid>.json
  m->reset();
  // Stopping removes the status file: it must never claim a mount that is gone.
  EXPECT_NE(stat(status_file.c_str(), &st), 0);
}

// `modelfs status` shows a mount whose status file is fresh and whose pid lives, and only those.
TEST(MonitorTest, StatusCommandShowsOnlyLiveMounts) {
  testing::TempDir cache("modelfs-monitor-status");
  MetricsRegistry registry;
  MonitorOptions o;
  o.status_dir = cache.Sub("run");
  o.mountpoint = "/mnt/live";
  o.interval_ms = 100;
  auto m = Monitor::Start(o, &registry, nullptr, nullptr);
  ASSERT_TRUE(m.ok()) << m.status().ToString();
  // Beside it: a file of a live pid (pid 1) that stopped updating a minute ago, and a torn one.
  nlohmann::json old = nlohmann::json::parse((*m)->StatusJson());
  old["pid"] = 1;
  old["updated_unix"] = old["updated_unix"].get<double>() - 60;
  testing::WriteFileOrDie(o.status_dir + "/" + StatusFileName(1), old.dump());
  testing::WriteFileOrDie(o.status_dir + "/" + StatusFileName(2), "{\"pid\": 2, \"upd");
  std::string out, err;
  ASSERT_EQ(StatusCommand({"--cache-dir", cache.path(), "--format", "json"}, NoEnv(), &out, &err), 0) << err;
  nlohmann::json j = nlohmann::json::parse(out);
  ASSERT_EQ(j["mounts"].size(), 1u) << out;
  EXPECT_EQ(j["mounts"][0]["pid"], getpid());
  EXPECT_EQ(j["mounts"][0]["mountpoint"], "/mnt/live");
  out.clear();
  ASSERT_EQ(StatusCommand({"--cache-dir", cache.path()}, NoEnv(), &out, &err), 0) << err;
  EXPECT_NE(out.find("mount running (pid " + std::to_string(getpid()) + ") at /mnt/live"), std::string::npos) << out;
  EXPECT_NE(out.find("no transfers in the last 10 s"), std::string::npos) << out;
  m->reset();
  out.clear();
  ASSERT_EQ(StatusCommand({"--cache-dir", cache.path(), "--format", "json"}, NoEnv(), &out, &err), 0) << err;
  EXPECT_TRUE(nlohmann::json::parse(out)["mounts"].empty()) << out;
}

// The FUSE error counts the adapter records (modelfs_fuse_errors_total) reach the status JSON and
// the text of `modelfs status`, by op and errno.
TEST(MonitorTest, StatusListsFuseErrorReplies) {
  testing::TempDir cache("modelfs-monitor-errors");
  MetricsRegistry registry;
  MonitorOptions o;
  o.status_dir = cache.Sub("run");
  o.interval_ms = 100000;  // only the samples this test takes
  auto m = Monitor::Start(o, &registry, nullptr, nullptr);
  ASSERT_TRUE(m.ok()) << m.status().ToString();
  EXPECT_TRUE(nlohmann::json::parse((*m)->StatusJson())["fuse_errors"].empty());
  registry.Value(Metric::kFuseErrors, {"read", "EIO"})->Add(3);
  registry.Value(Metric::kFuseErrors, {"lookup", "ENOENT"})->Add(12);
  (*m)->SampleNow();
  const nlohmann::json errors = nlohmann::json::parse((*m)->StatusJson())["fuse_errors"];
  ASSERT_EQ(errors.size(), 2u) << errors.dump();
  EXPECT_EQ(errors[0], nlohmann::json({{"op", "lookup"}, {"errno", "ENOENT"}, {"count", 12}}));
  EXPECT_EQ(errors[1], nlohmann::json({{"op", "read"}, {"errno", "EIO"}, {"count", 3}}));
  std::string out, err;
  ASSERT_EQ(StatusCommand({"--cache-dir", cache.path()}, NoEnv(), &out, &err), 0) << err;
  EXPECT_NE(out.find("error replies (op errno x count): lookup ENOENT x12, read EIO x3\n"), std::string::npos) << out;
}

TEST(MonitorTest, PortInUseFailsStart) {
  MetricsRegistry registry;
  auto h = [](const std::string&, std::string*, std::string*) { return false; };
  auto taken = MetricsServer::Start("127.0.0.1:0", h);
  ASSERT_TRUE(taken.ok());
  MonitorOptions o;
  o.listen = "127.0.0.1:" + std::to_string((*taken)->port());
  EXPECT_FALSE(Monitor::Start(o, &registry, nullptr, nullptr).ok());
}

}  // namespace
}  // namespace modelfs::cli
