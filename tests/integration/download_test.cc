// `modelfs download`: the real binary against the fake hub. Every file written is checked against
// the manifest's hashes here (independently of the command's own verification); a re-run keeps what
// is there; a run killed midway resumes from the block cache; a corrupting CDN makes it exit 1.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <openssl/sha.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "tests/testing/fake_hub_process.h"
#include "tests/testing/temp_dir.h"

namespace modelfs::testing {
namespace {

namespace fs = std::filesystem;

std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::string Hex(const unsigned char* md, size_t n) {
  std::string out;
  char b[3];
  for (size_t i = 0; i < n; i++) {
    snprintf(b, sizeof(b), "%02x", md[i]);
    out += b;
  }
  return out;
}

// The hash the hub publishes for a manifest entry: SHA-256 for LFS, git blob SHA-1 otherwise.
bool MatchesManifest(const std::string& data, const nlohmann::json& e) {
  unsigned char md[SHA256_DIGEST_LENGTH];
  if (e["lfs"].get<bool>()) {
    SHA256(reinterpret_cast<const unsigned char*>(data.data()), data.size(), md);
    return Hex(md, SHA256_DIGEST_LENGTH) == e["sha256"].get<std::string>();
  }
  const std::string blob = "blob " + std::to_string(data.size()) + std::string(1, '\0') + data;
  SHA1(reinterpret_cast<const unsigned char*>(blob.data()), blob.size(), md);
  return Hex(md, SHA_DIGEST_LENGTH) == e["git_oid"].get<std::string>();
}

struct Outcome {
  int code = -1;
  std::string out, err;
};

// Runs `modelfs download ARGS...`, stdout and stderr to files (so stderr is not a terminal).
// kill_after_ms > 0: SIGKILL it after that long instead of waiting for it to finish.
Outcome Download(const std::vector<std::string>& extra, const std::string& work, int kill_after_ms = 0,
                 const std::vector<std::string>& env = {}) {
  const std::string out = work + "/stdout", err = work + "/stderr";
  std::vector<std::string> args = {MODELFS_BINARY, "download"};
  args.insert(args.end(), extra.begin(), extra.end());
  pid_t pid = fork();
  if (pid == 0) {
    int o = open(out.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    int e = open(err.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    dup2(o, 1);
    dup2(e, 2);
    for (const auto& kv : env) putenv(strdup(kv.c_str()));
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
    argv.push_back(nullptr);
    execv(argv[0], argv.data());
    _exit(127);
  }
  Outcome r;
  int status = 0;
  if (kill_after_ms > 0) {
    std::this_thread::sleep_for(std::chrono::milliseconds(kill_after_ms));
    kill(pid, SIGKILL);
  }
  waitpid(pid, &status, 0);
  r.code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  r.out = ReadFile(out);
  r.err = ReadFile(err);
  return r;
}

class DownloadTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    FakeHubOptions o;
    FakeRepoSpec tiny;
    tiny.repo = "acme/tiny";
    tiny.total_size = 8 << 20;
    tiny.shards = 2;
    tiny.extra_revision = true;
    FakeRepoSpec ds;
    ds.repo = "acme/corpus";
    ds.type = "dataset";
    ds.total_size = 1 << 20;
    ds.shards = 1;
    o.repos = {tiny, ds};
    hub_ = new FakeHubProcess(o);
  }
  static void TearDownTestSuite() {
    delete hub_;
    hub_ = nullptr;
  }
  void SetUp() override {
    ASSERT_TRUE(hub_->ok()) << hub_->ServerOutput();
    hub_->ClearFaults();
  }
  std::vector<std::string> Common(const std::string& repo) {
    return {repo, "--local-dir", dir_.Sub("out"), "--endpoint", hub_->endpoint(), "--cache-dir",
            dir_.Sub("cache"), "--retries", "1", "--stall-timeout", "3"};
  }
  // Checks every file of `commit` in the local dir against the manifest; returns how many.
  int CheckAll(const std::string& repo, const std::string& commit) {
    int n = 0;
    for (const auto& e : hub_->manifest(repo)["commits"][commit]["files"]) {
      const std::string p = dir_.Sub("out") + "/" + e["path"].get<std::string>();
      EXPECT_TRUE(fs::exists(p)) << p;
      EXPECT_TRUE(MatchesManifest(ReadFile(p), e)) << p;
      n++;
    }
    return n;
  }

  static FakeHubProcess* hub_;
  TempDir dir_{"modelfs-dl"};
};
FakeHubProcess* DownloadTest::hub_ = nullptr;

TEST_F(DownloadTest, VerifiedCopyThenKeepsWhatIsThere) {
  Outcome r = Download(Common("acme/tiny"), dir_.path());
  ASSERT_EQ(r.code, 0) << r.out << r.err;
  EXPECT_NE(r.out.find("every file verified"), std::string::npos) << r.out;
  EXPECT_EQ(r.err.find('\r'), std::string::npos) << "progress bar drawn on a non-terminal";
  const int files = CheckAll("acme/tiny", hub_->CommitOf("main", "acme/tiny"));
  EXPECT_GT(files, 3);

  std::vector<std::string> json = Common("acme/tiny");
  json.insert(json.end(), {"--format", "json"});
  r = Download(json, dir_.path());
  ASSERT_EQ(r.code, 0) << r.out << r.err;
  nlohmann::json j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j["already_present"].get<int>(), files);
  EXPECT_EQ(j["downloaded"].get<int>(), 0);
  EXPECT_EQ(j["network_bytes"].get<uint64_t>(), 0u);
  EXPECT_TRUE(j["verified"].get<bool>());

  // A damaged local file is rewritten (from the cache: no network bytes).
  const std::string cfg = dir_.Sub("out") + "/config.json";
  std::ofstream(cfg, std::ios::trunc) << "{}";
  r = Download(json, dir_.path());
  ASSERT_EQ(r.code, 0) << r.out << r.err;
  j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j["downloaded"].get<int>(), 1);
  EXPECT_EQ(j["network_bytes"].get<uint64_t>(), 0u);
  CheckAll("acme/tiny", hub_->CommitOf("main", "acme/tiny"));
}

TEST_F(DownloadTest, RevisionGlobsAndDatasets) {
  std::vector<std::string> a = Common("acme/tiny@v1.0");
  a.insert(a.end(), {"--include", "*.json", "--exclude", "generation*", "--format", "json"});
  Outcome r = Download(a, dir_.path());
  ASSERT_EQ(r.code, 0) << r.out << r.err;
  nlohmann::json j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j["commit"], hub_->CommitOf("v1.0", "acme/tiny"));
  int want = 0;
  for (const auto& e : hub_->manifest("acme/tiny")["commits"][j["commit"].get<std::string>()]["files"]) {
    const std::string p = e["path"];
    const bool json_file = p.size() > 5 && p.substr(p.size() - 5) == ".json" && p.rfind("generation", 0) != 0;
    EXPECT_EQ(fs::exists(dir_.Sub("out") + "/" + p), json_file) << p;
    if (json_file) {
      EXPECT_TRUE(MatchesManifest(ReadFile(dir_.Sub("out") + "/" + p), e)) << p;
      want++;
    }
  }
  EXPECT_EQ(j["files"].get<int>(), want);
  EXPECT_GT(want, 0);

  fs::remove_all(dir_.Sub("out"));
  r = Download(Common("datasets/acme/corpus"), dir_.path());
  ASSERT_EQ(r.code, 0) << r.out << r.err;
  EXPECT_GT(CheckAll("acme/corpus", hub_->CommitOf("main", "acme/corpus")), 0);

  // Globs that match nothing, and a missing repo, are failures.
  a = Common("acme/tiny");
  a.insert(a.end(), {"--include", "nothing-*"});
  EXPECT_EQ(Download(a, dir_.path()).code, 1);
  EXPECT_EQ(Download(Common("acme/missing"), dir_.path()).code, 1);
  EXPECT_EQ(Download({"acme/tiny"}, dir_.path()).code, 2);  // no --local-dir
}

TEST_F(DownloadTest, ResumesFromTheCacheAfterBeingKilled) {
  // 4 MiB/s per response: the 8 MiB download takes about a second, so a kill at 600 ms lands midway.
  ASSERT_TRUE(hub_->SetFaults({{"where", "cdn"}, {"rate_bytes_per_s", 4 << 20}}));
  std::vector<std::string> json = Common("acme/tiny");
  json.insert(json.end(), {"--format", "json"});
  Outcome killed = Download(json, dir_.path(), 600);
  EXPECT_EQ(killed.code, -1) << "finished before the kill: " << killed.out;
  ASSERT_TRUE(hub_->ClearFaults());
  Outcome r = Download(json, dir_.path());
  ASSERT_EQ(r.code, 0) << r.out << r.err;
  nlohmann::json j = nlohmann::json::parse(r.out);
  EXPECT_TRUE(j["verified"].get<bool>());
  // Some of the bytes came from the cache the killed run filled.
  EXPECT_LT(j["network_bytes"].get<uint64_t>(), j["bytes"].get<uint64_t>()) << r.out;
  CheckAll("acme/tiny", hub_->CommitOf("main", "acme/tiny"));
  for (auto& e : fs::recursive_directory_iterator(dir_.Sub("out"))) {
    EXPECT_EQ(e.path().string().find(".modelfs-partial"), std::string::npos) << e.path();
  }
}

TEST_F(DownloadTest, JsonLogsWithoutSecrets) {
  const std::string token = "hf_DownloadTestSecretToken0123456789";
  std::vector<std::string> a = Common("acme/tiny");
  a.insert(a.end(), {"--log-level", "debug", "--log-format", "json", "--include", "*.safetensors"});
  Outcome r = Download(a, dir_.path(), 0, {"HF_TOKEN=" + token});
  ASSERT_EQ(r.code, 0) << r.out << r.err;
  std::istringstream ss(r.err);
  std::string line;
  int lines = 0;
  while (std::getline(ss, line)) {
    nlohmann::json j = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
    ASSERT_TRUE(j.is_object()) << line;
    EXPECT_TRUE(j.contains("ts") && j.contains("level") && j.contains("msg")) << line;
    lines++;
  }
  EXPECT_GT(lines, 0) << "debug logging produced nothing";
  EXPECT_EQ(r.err.find(token), std::string::npos);
  EXPECT_EQ(r.err.find("Signature"), std::string::npos);
  EXPECT_EQ(r.err.find("Expires="), std::string::npos);
}

TEST_F(DownloadTest, CorruptedBytesFailTheRun) {
  std::string shard;
  for (const auto& e : hub_->manifest("acme/tiny")["commits"][hub_->CommitOf("main", "acme/tiny")]["files"]) {
    if (e["lfs"].get<bool>()) shard = e["path"];
  }
  ASSERT_FALSE(shard.empty());
  ASSERT_TRUE(hub_->SetFaults({{"where", "cdn"}, {"corrupt_paths", {shard}}}));
  Outcome r = Download(Common("acme/tiny"), dir_.path());
  EXPECT_EQ(r.code, 1) << r.out << r.err;
  EXPECT_NE(r.out.find("FAILED " + shard), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("NOT verified"), std::string::npos) << r.out;
  EXPECT_FALSE(fs::exists(dir_.Sub("out") + "/" + shard));  // never under its real name
}

}  // namespace
}  // namespace modelfs::testing
