// Watching a real mount: --metrics-listen on a free loopback port and --metrics-file; a read moves
// the cache-miss and FUSE-read counters both in GET /metrics and in the file; `modelfs status`
// shows a live transfer (file, mirror, reads in flight) while a throttled read is running, and the
// bytes and rates after it.
#include <dirent.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <nlohmann/json.hpp>
#include <regex>
#include <thread>

#include "tests/integration/mount_helper.h"
#include "tests/testing/fake_hub_process.h"
#include "tests/testing/temp_dir.h"

namespace modelfs::testing {
namespace {

using Clock = std::chrono::steady_clock;

// Bytes read from path (whole file), or -1.
long long ReadCount(const std::string& path) {
  int fd = open(path.c_str(), O_RDONLY);
  if (fd < 0) return -1;
  std::vector<char> buf(1 << 20);
  long long total = 0;
  for (ssize_t n; (n = read(fd, buf.data(), buf.size())) > 0;) total += n;
  close(fd);
  return total;
}

// The value of one sample line ("name{labels} value") in Prometheus text; -1 if absent.
double Sample(const std::string& text, const std::string& series) {
  size_t at = text.find("\n" + series + " ");
  if (at == std::string::npos) return -1;
  return std::stod(text.substr(at + series.size() + 2));
}

nlohmann::json ReadJson(const std::string& path) {
  int fd = open(path.c_str(), O_RDONLY);
  if (fd < 0) return nullptr;
  std::string s;
  char buf[4096];
  for (ssize_t n; (n = read(fd, buf, sizeof buf)) > 0;) s.append(buf, static_cast<size_t>(n));
  close(fd);
  return nlohmann::json::parse(s, nullptr, false);
}

// Polls until pred() or timeout; true if pred held.
template <typename Pred>
bool WaitFor(Pred pred, int timeout_ms) {
  const auto end = Clock::now() + std::chrono::milliseconds(timeout_ms);
  while (Clock::now() < end) {
    if (pred()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  return pred();
}

// The daemon's status file (run/status-<pid>.json, the only one) once it holds a JSON object;
// "" if none appeared within 5 s.
std::string WaitForStatusFile(const std::string& cache) {
  std::string path;
  WaitFor([&] {
    path.clear();
    if (DIR* d = opendir((cache + "/run").c_str())) {
      while (dirent* e = readdir(d))
        if (std::regex_match(e->d_name, std::regex("status-[0-9]+\\.json"))) path = cache + "/run/" + e->d_name;
      closedir(d);
    }
    return !path.empty() && ReadJson(path).is_object();
  }, 5000);
  return path;
}

// A fake hub with one repo, and the spec of a mount of it on `cache` serving metrics on a free
// loopback port.
FakeHubOptions OneRepo(const std::string& repo, uint64_t total_size, int shards) {
  FakeHubOptions o;
  o.repos[0].repo = repo;
  o.repos[0].total_size = total_size;
  o.repos[0].shards = shards;
  return o;
}
MountSpec ListeningSpec(const FakeHubProcess& hub, const std::string& cache, const std::string& repo) {
  MountSpec spec;
  spec.endpoint = hub.endpoint();
  spec.cache_dir = cache;
  spec.repo = repo;
  spec.extra = {"--metrics-listen", "127.0.0.1:0"};
  return spec;
}

TEST(MetricsMountTest, MetricsEndpointFileAndLiveTransfers) {
  FakeHubProcess hub(OneRepo("acme/watch", 24 << 20, 3));
  ASSERT_TRUE(hub.ok()) << hub.ServerOutput();
  TempDir dir("modelfs-metrics");
  const std::string cache = dir.Sub("cache"), prom = dir.Sub("modelfs.prom");
  MountSpec spec = ListeningSpec(hub, cache, "acme/watch");
  spec.extra.insert(spec.extra.end(), {"--metrics-file", prom});
  MountedFs m(spec);
  ASSERT_TRUE(m.mounted()) << m.Log();

  // The daemon's status file (run/status-<pid>.json, the only one) names the port the listener
  // bound (port 0 = any free one).
  const std::string status_path = WaitForStatusFile(cache);
  ASSERT_NE(status_path, "") << m.Log();
  nlohmann::json st = ReadJson(status_path);
  EXPECT_EQ(status_path, cache + "/run/status-" + std::to_string(st["pid"].get<int>()) + ".json");
  struct stat sb;
  ASSERT_EQ(stat(status_path.c_str(), &sb), 0);
  EXPECT_EQ(sb.st_mode & 0777, 0600u);
  const std::string listen = st["metrics_listen"];
  std::smatch mt;
  ASSERT_TRUE(std::regex_match(listen, mt, std::regex("127\\.0\\.0\\.1:(\\d+)"))) << listen;
  const int port = std::stoi(mt[1]);

  auto scrape = [&]() {
    LocalHttpResponse r;
    EXPECT_TRUE(LocalHttp(port, "GET", "/metrics", "", &r));
    EXPECT_EQ(r.status, 200);
    return r.body;
  };
  long long size0 = 0;
  const std::string before = scrape();
  const double miss0 = std::max(0.0, Sample(before, "modelfs_cache_miss_bytes_total"));
  const double hit0 = std::max(0.0, Sample(before, "modelfs_cache_hit_bytes_total"));
  // Every byte read is a hit or a miss (a chunk prefetched before the reader asks for it is a
  // hit); a first read of a file misses at least once.
  auto counted = [&](const std::string& text) {
    return Sample(text, "modelfs_cache_miss_bytes_total") > miss0 &&
           Sample(text, "modelfs_cache_hit_bytes_total") + Sample(text, "modelfs_cache_miss_bytes_total") >=
               hit0 + miss0 + static_cast<double>(size0);
  };
  const double reads0 = std::max(0.0, Sample(before, "modelfs_fuse_request_duration_seconds_count{op=\"read\"}"));

  // Read one LFS shard through the mount.
  const std::string commit = hub.CommitOf("main");
  std::vector<std::string> lfs;
  for (const auto& f : hub.manifest()["commits"][commit]["files"])
    if (f.value("lfs", false)) lfs.push_back(f["path"]);
  // Last shard first: reading a shard whole fetches the next one ahead (HintNext), and the second
  // file read below must still be on the wire when it is read.
  std::sort(lfs.rbegin(), lfs.rend());
  ASSERT_GE(lfs.size(), 2u);
  // The slow read below needs lfs[1] uncached; a whole-file read of lfs[0] starts fetching the
  // next shard (cross-file lookahead), which could finish it first: throttle it from now on.
  ASSERT_TRUE(hub.SetFaults({{"where", "cdn"}, {"rate_bytes_per_s", 1 << 20}, {"only_paths", {lfs[1]}}}));
  size0 = ReadCount(m.Path(lfs[0]));
  ASSERT_EQ(size0, static_cast<long long>(hub.Content(commit, lfs[0]).size()));

  // Values are sampled each second: wait for the miss bytes to show.
  std::string after;
  ASSERT_TRUE(WaitFor([&] {
    after = scrape();
    return counted(after);
  }, 5000)) << after;
  EXPECT_GT(Sample(after, "modelfs_fuse_request_duration_seconds_count{op=\"read\"}"), reads0);
  const std::string mirror = "127.0.0.1:" + std::to_string(hub.hub_port());
  EXPECT_GE(Sample(after, "modelfs_fetch_bytes_total{mirror=\"" + mirror + "\"}"), static_cast<double>(size0)) << after;
  EXPECT_EQ(Sample(after, "modelfs_mirror_healthy{mirror=\"" + mirror + "\"}"), 1);
  EXPECT_NE(after.find("# TYPE modelfs_fuse_request_duration_seconds histogram\n"), std::string::npos);
  EXPECT_NE(after.find("modelfs_alert_active{alert=\"low_success_rate\"} 0\n"), std::string::npos);
  // Other paths: 404.
  LocalHttpResponse r404;
  ASSERT_TRUE(LocalHttp(port, "GET", "/secret", "", &r404));
  EXPECT_EQ(r404.status, 404);

  // The metrics file carries the same counters (rewritten each second, atomically).
  ASSERT_TRUE(WaitFor([&] {
    int fd = open(prom.c_str(), O_RDONLY);
    if (fd < 0) return false;
    std::string s(1 << 20, '\0');
    ssize_t n = read(fd, s.data(), s.size());
    close(fd);
    s.resize(n > 0 ? static_cast<size_t>(n) : 0);
    return counted("\n" + s);
  }, 5000));

  // A slow read (CDN throttled to 1 MiB/s per response: 4 s per 4 MiB chunk) is listed as a live transfer by
  // `modelfs status` while it runs.
  ASSERT_TRUE(hub.SetFaults({{"where", "cdn"}, {"rate_bytes_per_s", 1 << 20}}));
  std::atomic<long long> slow_size{-2};
  std::thread reader([&] { slow_size = ReadCount(m.Path(lfs[1])); });
  nlohmann::json live;
  std::string text;
  const bool seen = WaitFor([&] {
    std::string out;
    if (RunCmd(std::string(MODELFS_BINARY) + " status --format json --cache-dir " + cache, &out) != 0) return false;
    nlohmann::json j = nlohmann::json::parse(out, nullptr, false);
    if (!j.is_object() || j["mounts"].size() != 1) return false;
    for (const auto& t : j["mounts"][0]["transfers"]) {
      if (t["file"].get<std::string>().find(lfs[1]) != std::string::npos && t["reads_in_flight"].get<int>() > 0) {
        live = t;
        text.clear();
        RunCmd(std::string(MODELFS_BINARY) + " status --cache-dir " + cache, &text);
        return true;
      }
    }
    return false;
  }, 15000);
  ASSERT_TRUE(hub.ClearFaults());  // let the read finish at full speed
  reader.join();
  ASSERT_TRUE(seen) << "no live transfer of " << lfs[1] << " seen; log:\n" << m.Log();
  EXPECT_EQ(live["mirror"], mirror);
  EXPECT_GT(live["bytes_in_flight"].get<uint64_t>(), 0u);
  EXPECT_NE(text.find("mount running (pid "), std::string::npos) << text;
  EXPECT_NE(text.find("transfers (bytes so far, speed, source mirror, file):"), std::string::npos) << text;
  EXPECT_NE(text.find(lfs[1]), std::string::npos) << text;
  EXPECT_NE(text.find("in flight"), std::string::npos) << text;
  EXPECT_EQ(slow_size.load(), static_cast<long long>(hub.Content(commit, lfs[1]).size()));

  // After it: the transfer shows its bytes, and the window's rates count the calls.
  nlohmann::json done;
  ASSERT_TRUE(WaitFor([&] {
    std::string out;
    RunCmd(std::string(MODELFS_BINARY) + " status --format json --cache-dir " + cache, &out);
    nlohmann::json j = nlohmann::json::parse(out, nullptr, false);
    if (!j.is_object() || j["mounts"].size() != 1) return false;
    for (const auto& t : j["mounts"][0]["transfers"])
      if (t["file"].get<std::string>().find(lfs[1]) != std::string::npos && t["reads_in_flight"].get<int>() == 0 &&
          t["bytes"].get<uint64_t>() > 0) {
        done = j["mounts"][0];
        return true;
      }
    return false;
  }, 5000));
  EXPECT_GT(done["window"]["attempts"].get<uint64_t>(), 0u);
  EXPECT_EQ(done["window"]["success_ratio"].get<double>(), 1.0);
  EXPECT_GT(done["window"]["speed_Bps"].get<double>(), 0.0);

  // Unmounted: `modelfs status` no longer claims a live mount.
  m.Unmount();
  std::string out;
  ASSERT_EQ(RunCmd(std::string(MODELFS_BINARY) + " status --format json --cache-dir " + cache, &out), 0) << out;
  EXPECT_TRUE(nlohmann::json::parse(out)["mounts"].empty()) << out;
}

// Every error reply is seen: a read that fails (the only mirror answers 503 for that file) shows
// in modelfs_fuse_errors_total{op="read",errno="EIO"}, in `modelfs status` (text and JSON) and in
// one log line naming the file and the cause; a lookup of a missing name is counted as
// lookup/ENOENT but not logged as a failure. The statistics the layers keep (per-mirror content
// bytes, peak cache use, refused bytes, distrusted refetches) are exported too.
std::string ReadBytes(const std::string& path) {
  int fd = open(path.c_str(), O_RDONLY);
  if (fd < 0) return "";
  std::string out;
  std::vector<char> buf(1 << 20);
  for (ssize_t n; (n = read(fd, buf.data(), buf.size())) > 0;) out.append(buf.data(), static_cast<size_t>(n));
  close(fd);
  return out;
}

// Warm reads of a verified file come from the cache file by splice, once this run has checked
// the blocks (written them, or read them and matched their XXH3): the daemon copies nothing. A
// block damaged on disk while no daemon ran is caught by its first read in the next run and
// refetched; it is never spliced unchecked.
TEST(MetricsMountTest, WarmReadsOfCheckedBlocksAreSplicedAndADamagedBlockIsCaughtFirst) {
  FakeHubProcess hub(OneRepo("acme/warm", 16 << 20, 2));
  ASSERT_TRUE(hub.ok()) << hub.ServerOutput();
  TempDir dir("modelfs-splice");
  const std::string cache = dir.Sub("cache");
  const std::string commit = hub.CommitOf("main");
  std::string shard, sha;
  for (const auto& f : hub.manifest()["commits"][commit]["files"]) {
    if (f.value("lfs", false) && (shard.empty() || f["size"] > hub.FileAt(commit, shard)->at("size"))) {
      shard = f["path"];
      sha = f["sha256"];
    }
  }
  ASSERT_FALSE(shard.empty());
  const std::string want = hub.Content(commit, shard);
  ASSERT_GT(want.size(), 3u << 20);
  {
    MountedFs m(ListeningSpec(hub, cache, "acme/warm"));
    ASSERT_TRUE(m.mounted()) << m.Log();
    ASSERT_TRUE(ReadBytes(m.Path(shard)) == want);
    EXPECT_NE(m.Log().find("reads of checked cache blocks: spliced from the cache file"), std::string::npos)
        << m.Log();
  }
  // Block 2 is damaged on disk while no daemon runs.
  int fd = open((cache + "/blobs/" + sha.substr(0, 2) + "/sha256-" + sha + ".data").c_str(), O_RDWR);
  ASSERT_GE(fd, 0);
  char junk[64];
  memset(junk, 0x42, sizeof junk);
  ASSERT_EQ(pwrite(fd, junk, sizeof junk, (2 << 20) + 100), static_cast<ssize_t>(sizeof junk));
  close(fd);
  ASSERT_TRUE(hub.ClearLog());
  MountedFs m(ListeningSpec(hub, cache, "acme/warm"));
  ASSERT_TRUE(m.mounted()) << m.Log();
  // First read of this run: every block checked; the damaged one caught and fetched again.
  ASSERT_TRUE(ReadBytes(m.Path(shard)) == want);
  int cdn_gets = 0;
  for (const auto& r : hub.Log())
    if (r["listener"] == "cdn" && r["method"] == "GET" && r.value("repo_path", "").find(shard) != std::string::npos) {
      cdn_gets++;
      EXPECT_EQ(r["range"], "bytes=2097152-3145727");
    }
  EXPECT_EQ(cdn_gets, 1);
  // The kernel forgets its copy; the next read reaches the daemon again, which splices.
  fd = open(m.Path(shard).c_str(), O_RDONLY);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED), 0);
  close(fd);
  ASSERT_TRUE(ReadBytes(m.Path(shard)) == want);
  const std::string status_path = WaitForStatusFile(cache);
  ASSERT_NE(status_path, "") << m.Log();
  nlohmann::json st;
  EXPECT_TRUE(WaitFor([&] {
    st = ReadJson(status_path);
    return st.contains("cache") && st["cache"].value("spliced_bytes", 0ull) >= want.size();
  }, 5000)) << st.dump() << m.Log();
  EXPECT_NE(m.Log().find("corrupt"), std::string::npos) << m.Log();
}

TEST(MetricsMountTest, FailedReadIsCountedLoggedAndShownInStatus) {
  FakeHubProcess hub(OneRepo("acme/errs", 8 << 20, 2));
  ASSERT_TRUE(hub.ok()) << hub.ServerOutput();
  TempDir dir("modelfs-errors");
  const std::string cache = dir.Sub("cache");
  MountedFs m(ListeningSpec(hub, cache, "acme/errs"));
  ASSERT_TRUE(m.mounted()) << m.Log();
  const std::string commit = hub.CommitOf("main");
  std::vector<std::string> lfs;
  for (const auto& f : hub.manifest()["commits"][commit]["files"])
    if (f.value("lfs", false)) lfs.push_back(f["path"]);
  // Last shard first: reading a shard whole fetches the next one ahead (HintNext), and the second
  // file read below must still be on the wire when it is read.
  std::sort(lfs.rbegin(), lfs.rend());
  ASSERT_EQ(lfs.size(), 2u);

  // One good read, one that fails: every CDN answer for the second shard is a 503 (from before
  // the first read: a whole-file read of lfs[0] starts fetching the next shard).
  ASSERT_TRUE(hub.SetFaults({{"where", "cdn"}, {"error_rate", 1.0}, {"only_paths", {lfs[1]}}}));
  ASSERT_EQ(ReadCount(m.Path(lfs[0])), static_cast<long long>(hub.Content(commit, lfs[0]).size()));
  int fd = open(m.Path(lfs[1]).c_str(), O_RDONLY);
  ASSERT_GE(fd, 0);
  std::vector<char> buf(1 << 20);
  errno = 0;
  EXPECT_EQ(read(fd, buf.data(), buf.size()), -1);
  EXPECT_EQ(errno, EIO);
  close(fd);
  struct stat sb;
  EXPECT_NE(stat(m.Path("no-such-file.txt").c_str(), &sb), 0);
  EXPECT_EQ(errno, ENOENT);

  // The status file names the listener's port.
  const std::string status_path = WaitForStatusFile(cache);
  ASSERT_NE(status_path, "") << m.Log();
  const int port = std::stoi(ReadJson(status_path)["metrics_listen"].get<std::string>().substr(10));
  std::string text;
  ASSERT_TRUE(WaitFor([&] {
    LocalHttpResponse r;
    if (!LocalHttp(port, "GET", "/metrics", "", &r)) return false;
    text = r.body;
    return Sample(text, "modelfs_fuse_errors_total{op=\"read\",errno=\"EIO\"}") >= 1 &&
           Sample(text, "modelfs_cache_peak_used_bytes") > 0;
  }, 5000)) << text;
  EXPECT_GE(Sample(text, "modelfs_fuse_errors_total{op=\"lookup\",errno=\"ENOENT\"}"), 1) << text;
  const std::string mirror = "127.0.0.1:" + std::to_string(hub.hub_port());
  EXPECT_GE(Sample(text, "modelfs_mirror_read_bytes_total{mirror=\"" + mirror + "\"}"),
            static_cast<double>(hub.Content(commit, lfs[0]).size())) << text;
  EXPECT_GE(Sample(text, "modelfs_fetch_resolves_total{mirror=\"" + mirror + "\"}"), 1) << text;
  EXPECT_GE(Sample(text, "modelfs_cache_chunk_fetches_total"), 1) << text;
  EXPECT_EQ(Sample(text, "modelfs_cache_refused_bytes_total"), 0) << text;
  EXPECT_EQ(Sample(text, "modelfs_cache_distrusted_refetches_total"), 0) << text;

  // `modelfs status`: the counts by op and errno, in JSON and in text.
  // The status file is rewritten each second: wait for the one written after the error.
  std::string out;
  bool read_eio = false;
  WaitFor([&] {
    out.clear();
    if (RunCmd(std::string(MODELFS_BINARY) + " status --format json --cache-dir " + cache, &out) != 0) return false;
    nlohmann::json j = nlohmann::json::parse(out, nullptr, false);
    if (!j.is_object() || j["mounts"].size() != 1) return false;
    for (const auto& e : j["mounts"][0]["fuse_errors"])
      if (e["op"] == "read" && e["errno"] == "EIO" && e["count"].get<uint64_t>() >= 1) read_eio = true;
    return read_eio;
  }, 5000);
  EXPECT_TRUE(read_eio) << out;
  out.clear();
  ASSERT_EQ(RunCmd(std::string(MODELFS_BINARY) + " status --cache-dir " + cache, &out), 0) << out;
  EXPECT_TRUE(std::regex_search(out, std::regex("error replies \\(op errno x count\\): .*read EIO x[0-9]+"))) << out;

  // The log: the failed read with its path and cause; the missing name is not a failure.
  const std::string log = m.Log();
  EXPECT_TRUE(std::regex_search(log, std::regex("read /" + lfs[1] + " failed with EIO: .+"))) << log;
  EXPECT_EQ(log.find("no-such-file.txt"), std::string::npos) << log;
}

}  // namespace
}  // namespace modelfs::testing
