// The memory budget holds under a many-reader load: 64 threads read 1 MiB at random offsets of a
// repo that is not cached yet, through a mount with --memory-budget 32MiB. The daemon's peak RSS
// (sampled, and VmHWM) stays within the budget plus a fixed overhead (code, libraries, thread
// stacks, heap), and every byte read is right. Before the budget covered every buffer, the chunk
// pool kept a free list as large as its share on top of the buffers in use, each FUSE worker kept
// its own 1 MiB block buffer, and read replies were not bounded: about 4x the budget here.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <sys/stat.h>

#include <atomic>
#include <chrono>
#include <fstream>
#include <random>
#include <regex>
#include <string>
#include <thread>
#include <vector>

#include "tests/integration/mount_helper.h"
#include "tests/testing/fake_hub_process.h"
#include "tests/testing/temp_dir.h"

namespace modelfs::testing {
namespace {

constexpr const char* kRepo = "acme/memory";
constexpr uint64_t kBudgetMiB = 32;
// What the daemon holds besides its data buffers: measured at 25-30 MiB under this load
// (bench/memory.sh); more than twice that fails.
constexpr uint64_t kOverheadMiB = 64;

// A line of /proc/PID/status in MiB ("VmRSS", "VmHWM"); 0 if the process is gone.
uint64_t StatusMiB(pid_t pid, const std::string& key) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  while (std::getline(in, line))
    if (line.compare(0, key.size() + 1, key + ":") == 0) return std::stoull(line.substr(key.size() + 1)) / 1024;
  return 0;
}

TEST(MemoryTest, BudgetHoldsWhile64ThreadsReadAtRandom) {
  FakeHubOptions o;
  o.repos[0].repo = kRepo;
  o.repos[0].total_size = 256 << 20;
  o.repos[0].shards = 4;
  FakeHubProcess hub(o);
  ASSERT_TRUE(hub.ok()) << hub.ServerOutput();
  const std::string commit = hub.CommitOf("main");
  struct Shard {
    std::string path, original;
    uint64_t size;
  };
  std::vector<Shard> shards;
  for (const auto& f : hub.manifest()["commits"][commit]["files"])
    if (f["lfs"].get<bool>())
      shards.push_back({f["path"], hub.ContentPath(commit, f["path"]), f["size"].get<uint64_t>()});
  ASSERT_EQ(shards.size(), 4u);

  TempDir dir("modelfs-memory");
  MountSpec spec;
  spec.endpoint = hub.endpoint();
  spec.cache_dir = dir.Sub("cache");
  spec.repo = kRepo;
  spec.extra = {"--memory-budget", std::to_string(kBudgetMiB) + "MiB"};
  MountedFs m(spec);
  ASSERT_TRUE(m.mounted()) << m.Log();

  std::atomic<bool> done{false};
  uint64_t peak_sampled = 0;
  std::thread sampler([&] {
    while (!done) {
      peak_sampled = std::max(peak_sampled, StatusMiB(m.pid(), "VmRSS"));
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
  });
  std::atomic<int> wrong{0}, failed{0};
  std::vector<std::thread> readers;
  for (int t = 0; t < 64; ++t) {
    readers.emplace_back([&, t] {
      std::mt19937_64 rng(t);
      std::vector<int> fds, originals;
      for (const auto& s : shards) {
        fds.push_back(open(m.Path(s.path).c_str(), O_RDONLY));
        originals.push_back(open(s.original.c_str(), O_RDONLY));
      }
      std::vector<char> got(1 << 20), want(1 << 20);
      for (int i = 0; i < 24; ++i) {
        const size_t k = rng() % shards.size();
        const uint64_t off = (rng() % (shards[k].size - got.size())) & ~uint64_t{4095};
        const ssize_t n = pread(fds[k], got.data(), got.size(), static_cast<off_t>(off));
        if (n != static_cast<ssize_t>(got.size())) {
          failed++;
          continue;
        }
        if (pread(originals[k], want.data(), want.size(), static_cast<off_t>(off)) != n || got != want) wrong++;
      }
      for (int fd : fds) close(fd);
      for (int fd : originals) close(fd);
    });
  }
  for (auto& r : readers) r.join();
  done = true;
  sampler.join();
  const uint64_t hwm = StatusMiB(m.pid(), "VmHWM");
  printf("daemon peak RSS %llu MiB (sampled %llu), budget %llu MiB\n", static_cast<unsigned long long>(hwm),
         static_cast<unsigned long long>(peak_sampled), static_cast<unsigned long long>(kBudgetMiB));
  EXPECT_EQ(failed.load(), 0) << m.Log();
  EXPECT_EQ(wrong.load(), 0);
  EXPECT_GT(hwm, 0u);
  EXPECT_LE(hwm, kBudgetMiB + kOverheadMiB) << "peak RSS " << hwm << " MiB (sampled " << peak_sampled << ")";
  EXPECT_LE(peak_sampled, hwm + 1);
}


// Read replies are capped (--memory-budget 32MiB: 4 reply buffers), but a read takes its buffer only
// once its bytes are ready: reads waiting for a slow mirror hold none, and a reader of cached bytes
// is not queued behind them. Here 8 threads read a shard the CDN sends at 256 KiB/s per response
// (each read waits seconds), and while at least 4 of them are inside the daemon, another thread
// reads 16 MiB of a cached shard (dropped from the page cache first, so every read reaches the
// daemon). It must get all of it, right, before any of the slow reads returns. When the buffer was
// taken before the read started, the 4 slow reads held all of them and the cached read waited.
TEST(MemoryTest, CachedReadsDoNotWaitBehindReadsWaitingForTheNetwork) {
  FakeHubOptions o;
  o.repos[0].repo = kRepo;
  o.repos[0].total_size = 64 << 20;
  o.repos[0].shards = 2;
  FakeHubProcess hub(o);
  ASSERT_TRUE(hub.ok()) << hub.ServerOutput();
  const std::string commit = hub.CommitOf("main");
  std::vector<std::string> lfs;
  for (const auto& f : hub.manifest()["commits"][commit]["files"])
    if (f["lfs"].get<bool>()) lfs.push_back(f["path"]);
  ASSERT_EQ(lfs.size(), 2u);
  const std::string cached = lfs[0], slow = lfs[1];

  TempDir dir("modelfs-replies");
  MountSpec spec;
  spec.endpoint = hub.endpoint();
  spec.cache_dir = dir.Sub("cache");
  spec.repo = kRepo;
  spec.extra = {"--memory-budget", std::to_string(kBudgetMiB) + "MiB", "--log-level", "debug",
                "--stall-timeout", "120"};
  MountedFs m(spec);
  ASSERT_TRUE(m.mounted()) << m.Log();

  // The slow shard is slow from the start (a lookahead from the cached shard to it is slow too).
  ASSERT_TRUE(hub.SetFaults({{"where", "cdn"}, {"rate_bytes_per_s", 256 << 10}, {"only_paths", {slow}}}));
  // The cached shard: read whole (cached and verified), then out of the page cache.
  const std::string want = hub.Content(commit, cached);
  ASSERT_EQ(ReadFileOrDie(m.Path(cached)), want);
  const int cfd = open(m.Path(cached).c_str(), O_RDONLY);
  ASSERT_GE(cfd, 0);
  ASSERT_EQ(posix_fadvise(cfd, 0, 0, POSIX_FADV_DONTNEED), 0);
  struct stat sb;
  ASSERT_EQ(stat(m.Path(slow).c_str(), &sb), 0);
  const std::string slow_reads = "read ino " + std::to_string(sb.st_ino) + ":";
  std::atomic<int> slow_done{0}, slow_failed{0};
  std::vector<std::thread> readers;
  // One descriptor for all of them: an open of a file that is not verified yet drops the kernel's
  // cached pages of it, which waits for the reads in flight (ModelFs::Open, keep_cache).
  const int sfd = open(m.Path(slow).c_str(), O_RDONLY);
  ASSERT_GE(sfd, 0);
  for (int t = 0; t < 8; ++t) {
    readers.emplace_back([&, t] {
      std::vector<char> buf(1 << 20);
      const off_t off = static_cast<off_t>(t) * (4 << 20);  // one per chunk: 8 fetches
      if (pread(sfd, buf.data(), buf.size(), off) != static_cast<ssize_t>(buf.size())) slow_failed++;
      slow_done++;
    });
  }
  // At least as many slow reads inside the daemon as there are reply buffers (the debug log
  // names each read as it starts).
  auto count = [](const std::string& log, const std::string& what) {
    size_t n = 0;
    for (size_t p = log.find(what); p != std::string::npos; p = log.find(what, p + 1)) n++;
    return n;
  };
  for (int i = 0; i < 500 && count(m.Log(), slow_reads) < 4; ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  if (count(m.Log(), slow_reads) < 4 || slow_done.load() != 0) {
    ADD_FAILURE() << "not 4 slow reads waiting at once (" << slow_done.load() << " done already)\n" << m.Log();
    for (auto& r : readers) r.join();
    close(sfd);
    close(cfd);
    return;
  }

  std::string got(16 << 20, '\0');
  size_t have = 0;
  while (have < got.size()) {
    const ssize_t n = pread(cfd, got.data() + have, got.size() - have, static_cast<off_t>(have));
    if (n <= 0) break;
    have += static_cast<size_t>(n);
  }
  const int slow_done_then = slow_done.load();
  close(cfd);
  for (auto& r : readers) r.join();
  close(sfd);
  EXPECT_EQ(have, got.size());
  EXPECT_TRUE(got == want.substr(0, got.size()));
  EXPECT_EQ(slow_done_then, 0) << "the cached read waited for a read of the slow shard";
  EXPECT_EQ(slow_failed.load(), 0) << m.Log();
}

}  // namespace
}  // namespace modelfs::testing
