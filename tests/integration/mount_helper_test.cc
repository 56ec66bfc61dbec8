// mount.modelfs run exactly as mount(8) runs an external helper (`mount.modelfs SRC DIR -o OPTS`,
// mount(8) "EXTERNAL HELPERS"), for command lines and for /etc/fstab lines, against the fake hub:
// the mount must be live when the helper exits 0, read correctly, and come off with umount(8)'s
// syscall, as systemd does for a .mount unit.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "tests/integration/mount_helper.h"
#include "tests/testing/fake_hub_process.h"
#include "tests/testing/temp_dir.h"

namespace modelfs::testing {
namespace {

// The mount's line in /proc/self/mounts ("" if none).
std::string MountLine(const std::string& dir) {
  std::ifstream in("/proc/self/mounts");
  std::string line;
  while (std::getline(in, line)) {
    std::istringstream ss(line);
    std::string dev, mp;
    ss >> dev >> mp;
    if (mp == dir) return line;
  }
  return "";
}

std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

class MountHelperTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    FakeHubOptions o;
    FakeRepoSpec tiny;
    tiny.repo = "acme/tiny";
    tiny.total_size = 2 << 20;
    tiny.shards = 1;
    o.repos = {tiny};
    hub_ = new FakeHubProcess(o);
  }
  static void TearDownTestSuite() {
    delete hub_;
    hub_ = nullptr;
  }
  void SetUp() override {
    ASSERT_TRUE(hub_->ok()) << hub_->ServerOutput();
    mnt_ = dir_.Sub("mnt");
    mkdir(mnt_.c_str(), 0755);
  }
  void TearDown() override {
    if (IsMountPoint(mnt_)) umount2(mnt_.c_str(), MNT_DETACH);
  }
  // Unmounts as umount(8) / systemd do (root: the umount2 syscall); true if it came off.
  bool Umount() {
    if (umount2(mnt_.c_str(), 0) != 0) return false;
    return !IsMountPoint(mnt_);
  }

  static FakeHubProcess* hub_;
  TempDir dir_{"modelfs-helper"};
  std::string mnt_;
};
FakeHubProcess* MountHelperTest::hub_ = nullptr;

TEST_F(MountHelperTest, FakeModeShowsTheMappedCommand) {
  HelperOutcome r = RunMountHelper({"acme/tiny@v1.0", "/mnt/x", "-f", "-n", "-o",
                         "ro,allow_other,cache_dir=/var/cache/modelfs,cache_size=10GiB,"
                         "endpoint=http://127.0.0.1:1,_netdev,nofail,noauto,x-systemd.automount,"
                         "nodev,nosuid,noatime,log_level=debug,token_file=/etc/a\\,b"},
                        dir_.path());
  EXPECT_EQ(r.code, 0) << r.out;
  EXPECT_EQ(r.out, std::string(MODELFS_BINARY) +
                       " mount --allow-other --cache-dir /var/cache/modelfs --cache-size 10GiB "
                       "--endpoint http://127.0.0.1:1 --log-level debug --token-file /etc/a,b "
                       "acme/tiny@v1.0 /mnt/x\n");
  r = RunMountHelper({"none", "/mnt/x", "-f", "-o", "hf_cache"}, dir_.path());
  EXPECT_EQ(r.out, std::string(MODELFS_BINARY) + " mount --hf-cache /mnt/x\n");
  // Unknown options are an error (exit 1), unless sloppy (-s); so are a flag given a value and a
  // missing DIR.
  EXPECT_EQ(RunMountHelper({"none", "/mnt/x", "-f", "-o", "bogus"}, dir_.path()).code, 1);
  EXPECT_EQ(RunMountHelper({"none", "/mnt/x", "-f", "-o", "allow_other=1"}, dir_.path()).code, 1);
  EXPECT_EQ(RunMountHelper({"none", "/mnt/x", "-f", "-s", "-o", "bogus"}, dir_.path()).code, 0);
  EXPECT_EQ(RunMountHelper({"none"}, dir_.path()).code, 1);
}

TEST_F(MountHelperTest, MountsLikeMount8AndUnmounts) {
  const std::string opts = "ro,allow_other,cache_dir=" + dir_.Sub("cache") +
                           ",cache_size=1GiB,endpoint=" + hub_->endpoint() + ",_netdev,nofail";
  HelperOutcome r = RunMountHelper({"acme/tiny", mnt_, "-o", opts}, dir_.path());
  ASSERT_EQ(r.code, 0) << r.out;
  // Live as soon as the helper returned (the daemon reported readiness).
  const std::string line = MountLine(mnt_);
  ASSERT_FALSE(line.empty());
  EXPECT_NE(line.find("fuse.modelfs"), std::string::npos) << line;
  EXPECT_NE(line.find("allow_other"), std::string::npos) << line;
  const std::string commit = hub_->CommitOf("main");
  EXPECT_EQ(ReadFile(mnt_ + "/config.json"), hub_->Content(commit, "config.json"));
  EXPECT_TRUE(Umount());
}

TEST_F(MountHelperTest, FstabLineWithHfCache) {
  // An /etc/fstab line, split into fields the way mount(8) does before it calls the helper.
  const std::string fstab = "none " + mnt_ + " modelfs ro,nofail,_netdev,hf_cache,cache_dir=" +
                            dir_.Sub("cache") + ",endpoint=" + hub_->endpoint() + " 0 0";
  std::istringstream ss(fstab);
  std::string spec, file, type, options;
  ss >> spec >> file >> type >> options;
  ASSERT_EQ(type, "modelfs");
  HelperOutcome r = RunMountHelper({spec, file, "-o", options}, dir_.path());
  ASSERT_EQ(r.code, 0) << r.out;
  EXPECT_EQ(ReadFile(mnt_ + "/models--acme--tiny/refs/main"), hub_->CommitOf("main"));
  EXPECT_TRUE(Umount());
}

TEST_F(MountHelperTest, FailuresUseMount8ExitCodes) {
  // A repo that does not exist: the mount fails (32) and nothing is left mounted.
  HelperOutcome r = RunMountHelper({"acme/missing", mnt_, "-o",
                         "cache_dir=" + dir_.Sub("cache") + ",endpoint=" + hub_->endpoint()},
                        dir_.path());
  EXPECT_EQ(r.code, 32) << r.out;
  EXPECT_FALSE(IsMountPoint(mnt_));
  // A bad value: modelfs's usage error becomes mount(8)'s "incorrect invocation" (1).
  r = RunMountHelper({"none", mnt_, "-o", "cache_size=lots,cache_dir=" + dir_.Sub("cache")}, dir_.path());
  EXPECT_EQ(r.code, 1) << r.out;
}

// systemd Type=notify: with $NOTIFY_SOCKET set, the daemon says READY=1 once the mount is live.
TEST_F(MountHelperTest, NotifiesSystemdWhenReady) {
  const std::string sock_path = dir_.Sub("notify.sock");
  const int sock = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  ASSERT_GE(sock, 0);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  snprintf(addr.sun_path, sizeof(addr.sun_path), "%s", sock_path.c_str());
  ASSERT_EQ(bind(sock, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
  timeval tv{10, 0};  // bounded wait for the datagram
  setsockopt(sock, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));

  MountSpec spec;
  spec.endpoint = hub_->endpoint();
  spec.cache_dir = dir_.Sub("cache");
  spec.repo = "acme/tiny";
  spec.daemon = true;  // Type=notify also works with the forking mount
  spec.env = {"NOTIFY_SOCKET=" + sock_path};
  MountedFs m(spec);
  ASSERT_TRUE(m.mounted()) << m.Log();
  char buf[256] = {};
  const ssize_t n = recv(sock, buf, sizeof(buf) - 1, 0);
  close(sock);
  ASSERT_GT(n, 0) << "no notification; log:\n" << m.Log();
  const std::string msg(buf, static_cast<size_t>(n));
  EXPECT_EQ(msg.rfind("READY=1\nMAINPID=", 0), 0u) << msg;
  // The pid is the serving daemon's, which is alive.
  const int pid = atoi(msg.c_str() + strlen("READY=1\nMAINPID="));
  EXPECT_GT(pid, 1);
  EXPECT_EQ(kill(pid, 0), 0);
}

}  // namespace
}  // namespace modelfs::testing
