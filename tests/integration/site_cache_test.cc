// The site cache (deploy/site-cache: nginx started by its own run.sh) between real modelfs mounts
// and a fake hub: clients reading at once pull each byte from the upstream once; a killed site
// cache is invisible to readers and is used again once back; corrupt bytes from it are caught and
// never kept; the token never reaches the CDN and a gated file's bytes need one.
//
// Clients use the deployment's configuration: the site cache first, the hub behind it as the
// fallback, --endpoint-policy ordered.
#include <errno.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <openssl/evp.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>
#include <thread>

#include "tests/integration/mount_helper.h"
#include "tests/testing/fake_hub_process.h"
#include "tests/testing/site_cache_process.h"
#include "tests/testing/temp_dir.h"

namespace modelfs::testing {
namespace {

constexpr const char* kRepo = "acme/site";
constexpr const char* kGated = "acme/sitegated";
constexpr const char* kOther = "acme/siteother";  // read next to a stream of kRepo
constexpr const char* kToken = "hf_site_cache_secret_77";

FakeHubOptions Hub() {
  FakeHubOptions o;
  o.repos[0].repo = kRepo;
  o.repos[0].total_size = 24 << 20;  // 3 shards of about 8 MiB: 2 slices each
  o.repos[0].shards = 3;
  FakeRepoSpec other;
  other.repo = kOther;
  other.total_size = 12 << 20;
  other.shards = 2;
  o.repos.push_back(other);
  FakeRepoSpec g;
  g.repo = kGated;
  g.total_size = 6 << 20;
  g.shards = 1;
  g.gated = true;
  o.repos.push_back(g);
  o.hub_args = {"--token", kToken};
  return o;
}

struct RepoFile {
  std::string path;
  uint64_t size;
  bool lfs;
};

class SiteCacheTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() { hub_ = new FakeHubProcess(Hub()); }
  static void TearDownTestSuite() {
    delete hub_;
    hub_ = nullptr;
  }
  void SetUp() override {
    ASSERT_TRUE(hub_->ok());
    ASSERT_TRUE(hub_->ClearFaults());
    ASSERT_TRUE(hub_->ClearLog());
    ASSERT_TRUE(hub_->ClearStats());
  }

  static std::vector<RepoFile> Files(const std::string& repo = kRepo) {
    std::vector<RepoFile> out;
    const std::string commit = hub_->CommitOf("main", repo);
    for (const auto& f : hub_->manifest(repo)["commits"][commit]["files"])
      out.push_back({f["path"].get<std::string>(), f["size"].get<uint64_t>(), f["lfs"].get<bool>()});
    return out;
  }
  static uint64_t LfsBytes(const std::string& repo = kRepo) {
    uint64_t n = 0;
    for (const auto& f : Files(repo)) n += f.lfs ? f.size : 0;
    return n;
  }
  static std::string Content(const std::string& path, const std::string& repo = kRepo) {
    return hub_->Content(hub_->CommitOf("main", repo), path, repo);
  }
  // A shard of more than one 4 MiB slice.
  static std::string BigShard(const std::string& repo = kRepo, int which = 0) {
    for (const auto& f : Files(repo))
      if (f.lfs && f.size > (4u << 20) && which-- == 0) return f.path;
    return "";
  }

  // The deployment's client configuration: site cache first, the hub as the fallback.
  MountSpec ClientSpec(const SiteCacheProcess& site, const std::string& cache_dir, const std::string& repo = kRepo) {
    MountSpec spec;
    spec.endpoint = site.endpoint();
    spec.extra = {"--endpoint", hub_->endpoint(), "--endpoint-policy", "ordered"};
    spec.cache_dir = cache_dir;
    spec.repo = repo;
    spec.env = {std::string("HF_TOKEN=") + kToken};
    return spec;
  }

  static uint64_t CdnBytes() { return hub_->Stats()["bytes_sent"]["cdn"].get<uint64_t>(); }
  // GETs of one file's bytes on the hub's CDN (from anyone: the site cache or a client). The CDN
  // path ends in the fake xet hash, sha256("xet:" + the file's sha256 in hex) (fake_hub.py).
  static int CdnGetsOf(const std::string& path, const std::string& repo = kRepo) {
    return CdnRequestsOf(path, repo, "GET");
  }
  static int CdnRequestsOf(const std::string& path, const std::string& repo, const std::string& method) {
    const nlohmann::json* f = hub_->FileAt(hub_->CommitOf("main", repo), path, repo);
    if (!f) return -1;
    const std::string pre = "xet:" + (*f)["sha256"].get<std::string>();
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int md_len = 0;
    EVP_Digest(pre.data(), pre.size(), md, &md_len, EVP_sha256(), nullptr);
    char hex[2 * EVP_MAX_MD_SIZE + 1];
    for (unsigned i = 0; i < md_len; ++i) snprintf(hex + 2 * i, 3, "%02x", md[i]);
    const std::string xet(hex, 2 * md_len);
    int n = 0;
    for (const auto& r : hub_->Log())
      if (r["listener"] == "cdn" && (method.empty() || r["method"] == method) &&
          r["path"].get<std::string>().find(xet) != std::string::npos)
        ++n;
    return n;
  }
  // Requests for one file's /resolve/ URL that reached the hub.
  static int HubResolvesOf(const std::string& path, const std::string& repo) {
    int n = 0;
    const std::string tail = std::string(repo) + "/resolve/";
    for (const auto& r : hub_->Log()) {
      const std::string p = r["path"].get<std::string>();
      if (r["listener"] == "hub" && p.find(tail) != std::string::npos && p.size() >= path.size() &&
          p.compare(p.size() - path.size(), path.size(), path) == 0)
        ++n;
    }
    return n;
  }

  static FakeHubProcess* hub_;
  TempDir dir_{"modelfs-site"};
};
using json = nlohmann::json;
FakeHubProcess* SiteCacheTest::hub_ = nullptr;

// 4 clients read the whole repo at once, then 2 more one after another: the hub's CDN sends at
// most 1.05x the repo's large-file bytes; every byte every client read is right; the mount's
// status names the site cache as the endpoint that served the bytes, the fallback none; the
// CDN saw fewer connections than slice requests (keep-alive through the --cdn pool).
TEST_F(SiteCacheTest, ConcurrentClientsPullEachByteOnce) {
  // The CDN named with --cdn: slices come over kept-alive connections (the other tests follow
  // the redirect to an unnamed CDN).
  SiteCacheProcess site({hub_->endpoint()}, dir_.Sub("site"),
                        {"--cdn", "http://127.0.0.1:" + std::to_string(hub_->cdn_port())});
  ASSERT_TRUE(site.ok());
  const std::vector<RepoFile> files = Files();
  std::atomic<int> wrong{0};
  auto read_all = [&](const MountedFs& m, int rotate) {
    std::vector<RepoFile> order = files;
    std::rotate(order.begin(), order.begin() + rotate % order.size(), order.end());
    for (const auto& f : order)
      if (ReadFileOrDie(m.Path(f.path)) != Content(f.path)) {
        ADD_FAILURE() << f.path << " differs";
        wrong++;
      }
  };
  {
    std::vector<std::unique_ptr<MountedFs>> mounts;
    for (int i = 0; i < 4; ++i) {
      mounts.push_back(std::make_unique<MountedFs>(ClientSpec(site, dir_.Sub("c" + std::to_string(i)))));
      ASSERT_TRUE(mounts.back()->mounted()) << mounts.back()->Log();
    }
    std::vector<std::thread> ts;
    for (int i = 0; i < 4; ++i) ts.emplace_back([&, i] { read_all(*mounts[i], i); });
    for (auto& t : ts) t.join();
    // `modelfs status` of one client: the bytes came from the site cache, none from the hub.
    std::this_thread::sleep_for(std::chrono::milliseconds(1300));  // the monitor writes each second
    std::string out;
    ASSERT_EQ(RunCmd(std::string(MODELFS_BINARY) + " status --format json --cache-dir " + dir_.Sub("c0"), &out), 0)
        << out;
    json st = json::parse(out, nullptr, false);
    ASSERT_TRUE(st.is_object() && st["mounts"].is_array() && st["mounts"].size() == 1) << out;
    const json& ms = st["mounts"][0]["mirrors"];
    ASSERT_EQ(ms.size(), 2u) << out;
    EXPECT_EQ(ms[0]["mirror"], "127.0.0.1:" + std::to_string(site.port()));
    EXPECT_GE(ms[0]["read_bytes"].get<uint64_t>(), LfsBytes()) << out;
    EXPECT_EQ(ms[1]["read_bytes"].get<uint64_t>(), 0u) << out;
    out.clear();
    ASSERT_EQ(RunCmd(std::string(MODELFS_BINARY) + " status --cache-dir " + dir_.Sub("c0"), &out), 0) << out;
    EXPECT_NE(out.find("endpoints (file bytes served, state):"), std::string::npos) << out;
  }
  for (int i = 4; i < 6; ++i) {
    MountedFs m(ClientSpec(site, dir_.Sub("c" + std::to_string(i))));
    ASSERT_TRUE(m.mounted()) << m.Log();
    read_all(m, i);
  }
  EXPECT_EQ(wrong.load(), 0);
  const uint64_t pulled = CdnBytes(), repo = LfsBytes();
  EXPECT_GT(pulled, 0u);
  EXPECT_LE(static_cast<double>(pulled), 1.05 * static_cast<double>(repo))
      << "the upstream sent " << pulled << " bytes for a repo of " << repo;
  EXPECT_NE(site.AccessLog().find("cache=HIT"), std::string::npos);
  std::set<int> ports;
  int gets = 0;
  for (const auto& r : hub_->Log()) {
    if (r["listener"] == "cdn" && r["method"] == "GET") {
      ++gets;
      ports.insert(r["client_port"].get<int>());
    }
  }
  EXPECT_LT(ports.size(), static_cast<size_t>(gets)) << gets << " CDN requests on as many connections";
}

// The site cache is killed while a client reads a shard over a slow upstream: the read completes
// with the right bytes from the hub. Restarted, it serves the client's next file once the mount's
// --mirror-retry cool-down is over.
TEST_F(SiteCacheTest, KilledSiteCacheIsInvisibleAndUsedAgainWhenBack) {
  SiteCacheProcess site({hub_->endpoint()}, dir_.Sub("site"));
  ASSERT_TRUE(site.ok());
  MountSpec spec = ClientSpec(site, dir_.Sub("c"));
  spec.extra.insert(spec.extra.end(), {"--mirror-retry", "2"});
  MountedFs m(spec);
  ASSERT_TRUE(m.mounted()) << m.Log();
  // The last shard first: a reader of a shard starts fetching the ones after it (HintNext), so
  // the second file must come before it to be fetched when the client reads it.
  const std::string first = BigShard(kRepo, 2), second = BigShard(kRepo, 0);
  ASSERT_FALSE(first.empty());
  ASSERT_FALSE(second.empty());
  // About 2 s per 4 MiB slice, so the kill lands in the middle of the file.
  ASSERT_TRUE(hub_->SetFaults({{"where", "cdn"}, {"rate_bytes_per_s", 2 << 20}}));
  std::string got;
  std::thread reader([&] { got = ReadFileOrDie(m.Path(first)); });
  std::this_thread::sleep_for(std::chrono::milliseconds(1000));
  site.Kill();
  reader.join();
  EXPECT_EQ(got, Content(first)) << m.Log();
  EXPECT_NE(m.Log().find("failing over"), std::string::npos) << m.Log();
  ASSERT_TRUE(hub_->ClearFaults());

  ASSERT_TRUE(site.Start());
  const size_t log_before = site.AccessLog().size();
  std::this_thread::sleep_for(std::chrono::milliseconds(2500));  // past --mirror-retry 2
  EXPECT_EQ(ReadFileOrDie(m.Path(second)), Content(second));
  const std::string after = site.AccessLog().substr(log_before);
  EXPECT_NE(after.find(second), std::string::npos) << "the client did not return to the site cache:\n" << after;
}

// A slice in the site cache goes bad on its disk. A client reading through it detects the file's
// hash mismatch, reads the file from the hub instead, and keeps only right bytes: a second read
// and `modelfs verify` of its cache agree.
TEST_F(SiteCacheTest, CorruptSiteCacheBytesAreCaughtAndNeverKept) {
  SiteCacheProcess site({hub_->endpoint()}, dir_.Sub("site"));
  ASSERT_TRUE(site.ok());
  const std::string shard = BigShard();
  ASSERT_FALSE(shard.empty());
  const std::string want = Content(shard);
  {
    MountedFs m(ClientSpec(site, dir_.Sub("c1")));
    ASSERT_TRUE(m.mounted()) << m.Log();
    ASSERT_EQ(ReadFileOrDie(m.Path(shard)), want);
  }
  // Flip a byte in the body of the shard's second slice (nginx keeps key, headers, then body).
  const std::string sha = hub_->FileAt(hub_->CommitOf("main"), shard)->at("sha256").get<std::string>();
  const std::string key = "KEY: sha256:" + sha + " bytes=4194304-8388607";
  int corrupted = 0;
  for (const std::string& f : site.CachedSlices()) {
    std::string data = ReadFileOrDie(f);
    if (data.find(key) == std::string::npos) continue;
    data[data.size() - 1000] ^= 0x5a;
    std::ofstream(f, std::ios::binary | std::ios::trunc) << data;
    ++corrupted;
  }
  ASSERT_EQ(corrupted, 1) << "no cached slice with " << key;
  ASSERT_TRUE(hub_->ClearLog());

  const std::string cache2 = dir_.Sub("c2");
  {
    MountedFs m(ClientSpec(site, cache2));
    ASSERT_TRUE(m.mounted()) << m.Log();
    ReadFileOrDie(m.Path(shard));  // may hold the bad bytes: served as they arrive, verified at the end
    bool caught = false;
    for (int i = 0; i < 100 && !caught; ++i) {
      caught = m.Log().find("failed verification") != std::string::npos;
      if (!caught) std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    ASSERT_TRUE(caught) << m.Log();
    EXPECT_EQ(ReadFileOrDie(m.Path(shard)), want) << m.Log();
    EXPECT_GT(CdnGetsOf(shard), 0) << "the file was not fetched from the upstream";
  }
  std::string out;
  EXPECT_EQ(RunCmd(std::string(MODELFS_BINARY) + " verify --cache-dir " + cache2, &out), 0) << out;
}

// Fairness: while one client streams a shard slowly through the site cache, another client's
// safetensors header read of another repo's file (not cached at the site) is answered at once,
// not queued behind the stream; it costs the hub one /resolve/ (its HEAD and its GET share the
// cached answer) and the CDN one request. A HEAD is answered from the hub's answer alone: the CDN
// sees nothing for it (before, it fetched the file's first 4 MiB slice and made the client wait
// for it).
TEST_F(SiteCacheTest, HeaderReadIsNotQueuedBehindAnotherClientsStream) {
  SiteCacheProcess site({hub_->endpoint()}, dir_.Sub("site"));
  ASSERT_TRUE(site.ok());
  const std::string streamed = BigShard(kRepo, 0), headed = BigShard(kOther, 0), probed = BigShard(kOther, 1);
  ASSERT_FALSE(streamed.empty());
  ASSERT_FALSE(headed.empty());
  ASSERT_FALSE(probed.empty());

  // A metadata HEAD: the hub's headers, no byte from the CDN.
  std::string out;
  const std::string probe_url =
      site.endpoint() + "/" + kOther + "/resolve/" + hub_->CommitOf("main", kOther) + "/" + probed;
  ASSERT_EQ(RunCmd("curl -s -I -o /dev/null -D - '" + probe_url + "'", &out), 0);
  EXPECT_NE(out.find("200"), std::string::npos) << out;
  const std::string sha = hub_->FileAt(hub_->CommitOf("main", kOther), probed, kOther)->at("sha256").get<std::string>();
  EXPECT_NE(out.find(sha), std::string::npos) << "no X-Linked-Etag in the HEAD answer:\n" << out;
  EXPECT_EQ(CdnRequestsOf(probed, kOther, ""), 0) << "a HEAD reached the CDN";

  // About 4 s per 4 MiB slice of the streamed shard.
  ASSERT_TRUE(hub_->SetFaults({{"where", "cdn"}, {"rate_bytes_per_s", 1 << 20}, {"only_paths", {streamed}}}));
  MountedFs a(ClientSpec(site, dir_.Sub("a")));
  ASSERT_TRUE(a.mounted()) << a.Log();
  MountedFs b(ClientSpec(site, dir_.Sub("b"), kOther));
  ASSERT_TRUE(b.mounted()) << b.Log();
  std::atomic<bool> streamed_done{false};
  std::string got;
  std::thread streamer([&] {
    got = ReadFileOrDie(a.Path(streamed));
    streamed_done = true;
  });
  for (int i = 0; i < 200 && CdnGetsOf(streamed) == 0; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(20));
  EXPECT_GT(CdnGetsOf(streamed), 0) << "the stream did not start";

  std::string header;
  {
    const int fd = open(b.Path(headed).c_str(), O_RDONLY);
    ASSERT_GE(fd, 0) << b.Log();
    char len8[8];
    ASSERT_EQ(pread(fd, len8, 8, 0), 8) << b.Log();
    uint64_t n = 0;
    memcpy(&n, len8, 8);  // little-endian host
    ASSERT_LT(n, 1u << 20);
    header.resize(8 + n);
    ASSERT_EQ(pread(fd, header.data(), header.size(), 0), static_cast<ssize_t>(header.size())) << b.Log();
    close(fd);
  }
  const bool stream_still_running = !streamed_done.load();
  streamer.join();
  EXPECT_TRUE(stream_still_running) << "the header read finished only after the other client's stream";
  EXPECT_EQ(header, Content(headed, kOther).substr(0, header.size()));
  EXPECT_EQ(got, Content(streamed));
  EXPECT_EQ(b.Log().find("failing over"), std::string::npos) << b.Log();
  EXPECT_EQ(HubResolvesOf(headed, kOther), 1) << "the HEAD and the GET of one file each went to the hub";
  EXPECT_EQ(CdnRequestsOf(headed, kOther, "HEAD"), 0);
}

// Tokens: a client with a token reads a gated repo through the site cache; the CDN never sees an
// Authorization header; without a token (or with a wrong one) the same bytes are refused even
// though they are cached; no log or cache file holds the token.
TEST_F(SiteCacheTest, TokenNeverReachesTheCdnAndGatedBytesNeedOne) {
  SiteCacheProcess site({hub_->endpoint()}, dir_.Sub("site"));
  ASSERT_TRUE(site.ok());
  const std::string shard = BigShard(kGated);
  ASSERT_FALSE(shard.empty());
  const std::string want = Content(shard, kGated);
  {
    MountedFs m(ClientSpec(site, dir_.Sub("c"), kGated));
    ASSERT_TRUE(m.mounted()) << m.Log();
    EXPECT_EQ(ReadFileOrDie(m.Path(shard)), want);
  }
  EXPECT_GT(hub_->Stats()["requests"]["cdn"].get<int>(), 0);
  EXPECT_EQ(hub_->Stats()["auth_to_cdn"].get<int>(), 0);
  ASSERT_FALSE(site.CachedSlices().empty());

  const std::string url = site.endpoint() + "/" + kGated + "/resolve/" + hub_->CommitOf("main", kGated) + "/" + shard;
  auto fetch = [&](const std::string& auth, std::string* body) {
    std::string out;
    const std::string file = dir_.Sub("body");
    unlink(file.c_str());
    RunCmd("curl -s -o " + file + " -w '%{http_code}' -r 0-65535 " +
               (auth.empty() ? "" : "-H 'Authorization: Bearer " + auth + "' ") + "'" + url + "'",
           &out);
    *body = ReadFileOrDie(file);
    return out;
  };
  std::string body;
  EXPECT_EQ(fetch("", &body), "401");
  EXPECT_EQ(body.find(want.substr(100, 64)), std::string::npos);
  EXPECT_EQ(fetch("hf_wrong_token", &body), "401");
  EXPECT_EQ(body.find(want.substr(100, 64)), std::string::npos);
  EXPECT_EQ(fetch(kToken, &body), "206");
  EXPECT_EQ(body, want.substr(0, 65536));
  EXPECT_EQ(hub_->Stats()["auth_to_cdn"].get<int>(), 0);

  EXPECT_EQ(site.AllLogs().find(kToken), std::string::npos);
  for (const auto& e : std::filesystem::recursive_directory_iterator(site.cache_dir())) {
    if (e.is_regular_file()) {
      EXPECT_EQ(ReadFileOrDie(e.path()).find(kToken), std::string::npos) << e.path();
    }
  }
}

}  // namespace
}  // namespace modelfs::testing
