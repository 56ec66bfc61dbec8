// Real readers from Debian's packages on a real mount: numpy (python3-numpy) maps every tensor with
// numpy.memmap, PyTorch (python3-torch) builds every tensor from the mounted safetensors, and the
// repo's own stdlib safetensors reader (tests/testing/st_load.py) loads and SHA-256-checks every
// shard. Each compares against the fake hub's original files, tensor by tensor. PyTorch also
// torch.load()s a torch.save checkpoint (a zip read with seeks) from the mount. The scripts live in
// tests/integration/readers/ and run under Debian's /usr/bin/python3 (the one apt installs into).
#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <stdio.h>
#include <sys/wait.h>

#include <array>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <thread>
#include <string>
#include <vector>

#include "tests/integration/mount_helper.h"
#include "tests/testing/fake_hub_process.h"
#include "tests/testing/temp_dir.h"

namespace modelfs::testing {
namespace {

constexpr const char* kRepo = "acme/readers";
constexpr const char* kPython = "/usr/bin/python3";

std::string Script(const std::string& name) {
  return std::string(MODELFS_SOURCE_DIR) + "/tests/integration/readers/" + name;
}

class ReadersTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    FakeHubOptions o;
    FakeRepoSpec r;
    r.repo = kRepo;
    r.total_size = 12 << 20;
    r.shards = 3;
    o.repos = {r};
    hub_ = new FakeHubProcess(o);
  }
  static void TearDownTestSuite() {
    delete hub_;
    hub_ = nullptr;
  }
  void SetUp() override {
    ASSERT_TRUE(hub_->ok()) << hub_->ServerOutput();
    commit_ = hub_->CommitOf("main");
    for (const auto& e : hub_->manifest()["commits"][commit_]["files"]) {
      const std::string path = e["path"];
      if (path.size() > 12 && path.substr(path.size() - 12) == ".safetensors") {
        shards_ += " " + path;
        const std::string dir =
            std::filesystem::path(hub_->ContentPath(commit_, path)).parent_path().string();
        ASSERT_TRUE(original_.empty() || original_ == dir) << "shards in different dirs";
        original_ = dir;
      }
    }
    ASSERT_FALSE(shards_.empty());
    spec_.endpoint = hub_->endpoint();
    spec_.cache_dir = tmp_.Sub("cache");
    spec_.repo = kRepo;
  }

  static FakeHubProcess* hub_;
  TempDir tmp_{"modelfs-readers"};
  MountSpec spec_;
  std::string commit_, shards_, original_;
};
FakeHubProcess* ReadersTest::hub_ = nullptr;

TEST_F(ReadersTest, NumpyMemmapOfEveryTensor) {
  MountedFs m(spec_);
  ASSERT_TRUE(m.mounted()) << m.Log();
  std::string out;
  int rc = RunCmd(std::string(kPython) + " " + Script("numpy_memmap.py") + " " + m.path() + " " +
                   original_ + shards_,
               &out);
  EXPECT_EQ(rc, 0) << out << m.Log();
  EXPECT_EQ(out.rfind("OK ", 0), 0u) << out;
  // The comparison can fail: against another commit's bytes (a different repo's dir) it does.
  TempDir other{"modelfs-readers-bad"};
  for (const auto& e : hub_->manifest()["commits"][commit_]["files"]) {
    const std::string path = e["path"];
    if (shards_.find(" " + path) == std::string::npos) continue;
    std::string bytes = hub_->Content(commit_, path);
    bytes[bytes.size() - 1] ^= 0x5a;  // last byte of the last tensor
    std::ofstream(other.Sub(path), std::ios::binary) << bytes;
  }
  out.clear();
  rc = RunCmd(std::string(kPython) + " " + Script("numpy_memmap.py") + " " + m.path() + " " +
               other.path() + shards_,
           &out);
  EXPECT_EQ(rc, 1) << out;
}

TEST_F(ReadersTest, TorchTensorsFromSafetensors) {
  MountedFs m(spec_);
  ASSERT_TRUE(m.mounted()) << m.Log();
  std::string out;
  int rc = RunCmd(std::string(kPython) + " " + Script("torch_load.py") + " safetensors " + m.path() +
                   " " + original_ + shards_,
               &out);
  EXPECT_EQ(rc, 0) << out << m.Log();
  EXPECT_EQ(out.rfind("OK ", 0), 0u) << out;
}

TEST_F(ReadersTest, OwnSafetensorsReaderWithMmapAndSha256) {
  MountedFs m(spec_);
  ASSERT_TRUE(m.mounted()) << m.Log();
  const std::string manifest = tmp_.Sub("manifest.json");
  std::ofstream(manifest) << hub_->manifest().dump();
  std::string out;
  // -S: no site-packages, so st_load.py runs its stdlib-only path (numpy is optional there and
  // tested above).
  int rc = RunCmd(std::string(kPython) + " -S " + MODELFS_SOURCE_DIR + "/tests/testing/st_load.py " +
                   m.path() + " --manifest " + manifest + " --commit " + commit_ + " --mmap",
               &out);
  EXPECT_EQ(rc, 0) << out << m.Log();
}

// A fake hub over a repo that also holds a torch.save checkpoint. FakeHubProcess generates and
// serves in one step, so this runs the same two programs itself with a step in between
// (readers/add_torch_checkpoint.py). RAII: the server gets SIGTERM then SIGKILL and is reaped.
class CheckpointHub {
 public:
  CheckpointHub() {
    const std::string repo_dir = root_.path() + "/models/acme/ckpt";
    std::string out;
    if (RunCmd(std::string(kPython) + " " + MODELFS_SOURCE_DIR + "/tests/testing/gen_repo.py --root " +
                   root_.path() + " --repo acme/ckpt --total-size 1MiB --shards 1 --quiet",
               &out) != 0 ||
        RunCmd(std::string(kPython) + " " + Script("add_torch_checkpoint.py") + " " + repo_dir, &out) != 0) {
      ADD_FAILURE() << out;
      return;
    }
    original_ = out;  // the script prints the checkpoint's path
    while (!original_.empty() && original_.back() == '\n') original_.pop_back();
    const std::string ready = root_.Sub("ready.json");
    pid_ = fork();
    if (pid_ == 0) {
      int fd = open(root_.Sub("hub.log").c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
      dup2(fd, 1);
      dup2(fd, 2);
      const std::string hub = std::string(MODELFS_SOURCE_DIR) + "/tests/testing/fake_hub.py";
      execl(kPython, kPython, hub.c_str(), "--root", root_.path().c_str(), "--port", "0",
            "--cdn-port", "0", "--ready-file", ready.c_str(), (char*)nullptr);
      _exit(127);
    }
    // Bounded wait for the ready file: 30 s x 10 ms polls.
    for (int i = 0; i < 3000 && port_ == 0; i++) {
      std::ifstream in(ready);
      nlohmann::json j = nlohmann::json::parse(in, nullptr, /*allow_exceptions=*/false);
      if (j.is_object() && j.contains("hub_port")) port_ = j["hub_port"].get<int>();
      else std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    if (port_ == 0) ADD_FAILURE() << "fake hub did not start";
  }
  ~CheckpointHub() {
    if (pid_ <= 0) return;
    kill(pid_, SIGTERM);
    int st;
    for (int i = 0; i < 200 && waitpid(pid_, &st, WNOHANG) == 0; i++) {
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    if (kill(pid_, 0) == 0) {
      kill(pid_, SIGKILL);
      waitpid(pid_, &st, 0);
    }
  }
  CheckpointHub(const CheckpointHub&) = delete;
  CheckpointHub& operator=(const CheckpointHub&) = delete;

  bool ok() const { return port_ != 0; }
  std::string endpoint() const { return "http://127.0.0.1:" + std::to_string(port_); }
  const std::string& original() const { return original_; }  // the checkpoint's served bytes

 private:
  TempDir root_{"modelfs-ckpt-hub"};
  std::string original_;
  pid_t pid_ = -1;
  int port_ = 0;
};

TEST(ReadersCheckpointTest, TorchLoadOfATorchSaveCheckpoint) {
  CheckpointHub hub;
  ASSERT_TRUE(hub.ok());
  TempDir tmp("modelfs-ckpt");
  MountSpec spec;
  spec.endpoint = hub.endpoint();
  spec.cache_dir = tmp.Sub("cache");
  MountedFs m(spec);
  ASSERT_TRUE(m.mounted()) << m.Log();
  const std::string mounted = m.Path("acme/ckpt/pytorch_model.bin");
  std::string out;
  int rc = RunCmd(std::string(kPython) + " " + Script("torch_load.py") + " checkpoint " + mounted +
                      " " + hub.original(),
                  &out);
  EXPECT_EQ(rc, 0) << out << m.Log();
  EXPECT_EQ(out.rfind("OK 6 ", 0), 0u) << out;  // the six tensors add_torch_checkpoint.py saves
}

}  // namespace
}  // namespace modelfs::testing
