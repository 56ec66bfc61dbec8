// Smoke tests of ServeFuse through a real kernel mount, with the in-memory hub and store. The
// server runs in a forked child (ServeFuse owns the process: signal handlers, daemonizing), the
// test process uses the mount with plain syscalls, and TearDown always unmounts. Skipped when
// /dev/fuse is not usable (no FUSE in the sandbox).
#include "fs/fuse_adapter.h"

#include <dirent.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <fstream>
#include <set>
#include <sstream>
#include <string>
#include <thread>

#include "tests/testing/fake_hub_api.h"
#include "tests/testing/memory_blob_store.h"
#include "tests/testing/temp_dir.h"

namespace modelfs {
namespace {

using testing::FakeHubApi;
using testing::MemoryBlobStore;
using testing::TempDir;

const std::string kCommit(40, 'c');
const std::string kBig = [] {
  std::string s(3 * 1024 * 1024 + 123, '\0');  // > one 1 MiB FUSE read, not a multiple of pages
  for (size_t i = 0; i < s.size(); ++i) s[i] = static_cast<char>('a' + (i * 7 + i / 4096) % 26);
  return s;
}();

bool IsMounted(const std::string& path) {
  std::ifstream in("/proc/self/mountinfo");
  std::string line;
  while (std::getline(in, line)) {
    std::istringstream f(line);
    std::string id, parent, dev, root, mp;
    f >> id >> parent >> dev >> root >> mp;
    if (mp == path) return true;
  }
  return false;
}

// Waits until `pred` holds or `secs` pass.
template <typename Pred>
bool WaitFor(Pred pred, double secs) {
  const auto end = std::chrono::steady_clock::now() + std::chrono::duration<double>(secs);
  while (std::chrono::steady_clock::now() < end) {
    if (pred()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return pred();
}

// waitpid with a timeout; kills the child when it does not exit. Returns the exit code, or -1.
int WaitChild(pid_t pid, double secs) {
  int status = 0;
  const bool done = WaitFor([&] { return waitpid(pid, &status, WNOHANG) == pid; }, secs);
  if (!done) {
    kill(pid, SIGKILL);
    waitpid(pid, &status, 0);
    return -1;
  }
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

class FuseAdapterTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (access("/dev/fuse", R_OK | W_OK) != 0) GTEST_SKIP() << "no usable /dev/fuse";
    mnt_ = dir_.Sub("mnt");
    ASSERT_EQ(mkdir(mnt_.c_str(), 0755), 0);
  }

  void TearDown() override {
    if (!mnt_.empty() && IsMounted(mnt_)) {
      if (umount2(mnt_.c_str(), MNT_DETACH) != 0) {
        std::string cmd = "fusermount3 -u -z '" + mnt_ + "' 2>/dev/null";
        (void)std::system(cmd.c_str());
      }
    }
    if (child_ > 0) WaitChild(child_, 10);
    EXPECT_FALSE(!mnt_.empty() && IsMounted(mnt_));
  }

  // Forks a child that serves the fake repos at mnt_; with fail_make_fs, make_fs returns NotFound.
  void StartServer(bool foreground, bool fail_make_fs = false) {
    std::fflush(nullptr);
    child_ = fork();
    ASSERT_GE(child_, 0);
    if (child_ != 0) return;
    FakeHubApi hub;
    MemoryBlobStore store;
    const RepoId repo{"model", "acme", "gpt"};
    hub.SetRef(repo, "main", kCommit);
    hub.SetTree(repo, kCommit,
                {store.MakeFile("config.json", "{\"x\":1}\n"),
                 store.MakeFile("model.safetensors", kBig, /*lfs=*/true),
                 store.MakeFile("sub/a.txt", "aaa")});
    MountOptions mo;
    mo.mountpoint = mnt_;
    mo.foreground = foreground;
    mo.max_threads = 8;
    FsOptions fo;
    fo.uid = 4321;
    fo.gid = 8765;
    const int rc = ServeFuse(mo, [&]() -> Result<std::unique_ptr<ModelFs>> {
      if (fail_make_fs) return Status::NotFound("no such repo (test)");
      return std::make_unique<ModelFs>(fo, hub, store);
    });
    _exit(rc);
  }

  std::string P(const std::string& rel) const { return mnt_ + "/" + rel; }

  TempDir dir_{"modelfs-fuse-test"};
  std::string mnt_;
  pid_t child_ = -1;
};

TEST_F(FuseAdapterTest, ForegroundServesReadOnlyTree) {
  StartServer(/*foreground=*/true);
  ASSERT_TRUE(WaitFor([&] { return IsMounted(mnt_); }, 10)) << "mount did not appear";

  struct stat st;
  ASSERT_EQ(stat(P("acme/gpt/model.safetensors").c_str(), &st), 0) << strerror(errno);
  EXPECT_TRUE(S_ISREG(st.st_mode));
  EXPECT_EQ(st.st_mode & 07777, 0444u);
  EXPECT_EQ(static_cast<size_t>(st.st_size), kBig.size());
  EXPECT_EQ(st.st_uid, 4321u);
  EXPECT_EQ(st.st_gid, 8765u);
  ASSERT_EQ(stat(P("acme/gpt/sub").c_str(), &st), 0);
  EXPECT_TRUE(S_ISDIR(st.st_mode));
  EXPECT_EQ(st.st_mode & 07777, 0555u);

  EXPECT_EQ(ReadFile(P("acme/gpt/config.json")), "{\"x\":1}\n");
  EXPECT_EQ(ReadFile(P("acme/gpt/sub/a.txt")), "aaa");
  EXPECT_TRUE(ReadFile(P("acme/gpt/model.safetensors")) == kBig);

  // pread across the 1 MiB request boundary and at EOF.
  int fd = open(P("acme/gpt/model.safetensors").c_str(), O_RDONLY);
  ASSERT_GE(fd, 0);
  std::string buf(4096, '\0');
  ASSERT_EQ(pread(fd, buf.data(), buf.size(), (1 << 20) - 100), 4096);
  EXPECT_EQ(buf, kBig.substr((1 << 20) - 100, 4096));
  EXPECT_EQ(pread(fd, buf.data(), buf.size(), kBig.size() - 10), 10);
  EXPECT_EQ(pread(fd, buf.data(), buf.size(), kBig.size()), 0);
  // mmap works (no direct_io).
  void* m = mmap(nullptr, kBig.size(), PROT_READ, MAP_PRIVATE, fd, 0);
  ASSERT_NE(m, MAP_FAILED) << strerror(errno);
  EXPECT_EQ(std::memcmp(m, kBig.data(), kBig.size()), 0);
  munmap(m, kBig.size());
  close(fd);

  // Listings.
  std::set<std::string> names;
  DIR* d = opendir(P("acme/gpt").c_str());
  ASSERT_NE(d, nullptr);
  while (dirent* e = readdir(d)) names.insert(e->d_name);
  closedir(d);
  EXPECT_EQ(names, (std::set<std::string>{".", "..", "config.json", "model.safetensors", "sub"}));
  names.clear();
  d = opendir(mnt_.c_str());
  ASSERT_NE(d, nullptr);
  while (dirent* e = readdir(d)) names.insert(e->d_name);
  closedir(d);
  EXPECT_EQ(names, (std::set<std::string>{".", "..", "acme"}));

  // Misses and writes.
  EXPECT_NE(stat(P("acme/nope").c_str(), &st), 0);
  EXPECT_EQ(errno, ENOENT);
  EXPECT_NE(stat(P("acme/gpt/nope").c_str(), &st), 0);
  EXPECT_EQ(errno, ENOENT);
  EXPECT_NE(stat(P(".Trash").c_str(), &st), 0);
  EXPECT_EQ(errno, ENOENT);
  EXPECT_LT(open(P("acme/gpt/config.json").c_str(), O_WRONLY), 0);
  EXPECT_EQ(errno, EROFS);
  EXPECT_LT(open(P("acme/gpt/new.txt").c_str(), O_WRONLY | O_CREAT, 0644), 0);
  EXPECT_EQ(errno, EROFS);
  EXPECT_NE(mkdir(P("acme/gpt/newdir").c_str(), 0755), 0);
  EXPECT_EQ(errno, EROFS);
  EXPECT_NE(unlink(P("acme/gpt/config.json").c_str()), 0);
  EXPECT_EQ(errno, EROFS);

  struct statvfs sv;
  ASSERT_EQ(statvfs(mnt_.c_str(), &sv), 0);
  EXPECT_TRUE(sv.f_flag & ST_RDONLY);

  ASSERT_EQ(umount2(mnt_.c_str(), 0), 0) << strerror(errno);
  EXPECT_EQ(WaitChild(child_, 10), 0);
  child_ = -1;
}

TEST_F(FuseAdapterTest, DaemonizeReturnsOnceLive) {
  StartServer(/*foreground=*/false);
  // The invoking process exits 0 only when the mount is live and make_fs succeeded.
  EXPECT_EQ(WaitChild(child_, 10), 0);
  child_ = -1;
  EXPECT_TRUE(IsMounted(mnt_));
  EXPECT_EQ(ReadFile(P("acme/gpt/sub/a.txt")), "aaa");
  ASSERT_EQ(umount2(mnt_.c_str(), 0), 0) << strerror(errno);
}

TEST_F(FuseAdapterTest, MakeFsFailureExitsOneAndUnmounts) {
  StartServer(/*foreground=*/false, /*fail_make_fs=*/true);
  EXPECT_EQ(WaitChild(child_, 10), 1);
  child_ = -1;
  EXPECT_TRUE(WaitFor([&] { return !IsMounted(mnt_); }, 5));
}

TEST_F(FuseAdapterTest, SigtermUnmountsCleanly) {
  StartServer(/*foreground=*/true);
  ASSERT_TRUE(WaitFor([&] { return IsMounted(mnt_); }, 10));
  EXPECT_EQ(ReadFile(P("acme/gpt/config.json")), "{\"x\":1}\n");
  kill(child_, SIGTERM);
  EXPECT_EQ(WaitChild(child_, 10), 0);
  child_ = -1;
  EXPECT_FALSE(IsMounted(mnt_));
}

}  // namespace
}  // namespace modelfs
