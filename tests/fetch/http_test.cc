// HttpHubApi and HttpRangeSource against (1) the project's fake hub (tests/testing/fake_hub.py,
// run by FakeHubProcess) for protocol behaviour, faults and token rules, and (2) a tiny scripted
// in-process server for protocol violations the fake hub never commits (wrong Content-Range, a 200
// to a Range request, too many bytes, bad redirects).
#include <algorithm>
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstring>
#include <functional>
#include <mutex>
#include <random>
#include <set>
#include <thread>

#include "common/log.h"
#include "fetch/http_hub_api.h"
#include "fetch/http_range_source.h"
#include "tests/testing/fake_hub_process.h"
#include "tests/testing/stepped_clock.h"

namespace modelfs {
namespace {

using nlohmann::json;
using testing::FakeHubOptions;
using testing::FakeHubProcess;
using testing::FakeRepoSpec;
using Clock = std::chrono::steady_clock;

RepoId Repo(const std::string& id = "org/tiny") {
  RepoId r;
  r.ns = id.substr(0, id.find('/'));
  r.name = id.substr(id.find('/') + 1);
  return r;
}

FetchOptions Opts(const std::string& endpoint) {
  FetchOptions o;
  o.endpoint = endpoint;
  o.connect_timeout_ms = 2000;
  o.stall_timeout_s = 2;
  o.request_timeout_s = 30;
  o.max_retries = 4;
  o.retry_base_ms = 10;  // keep retry tests fast
  return o;
}

// Options for one generated repo "org/tiny" and extra fake_hub.py flags.
FakeHubOptions HubWith(std::vector<std::string> args, uint64_t total_size = 0, int shards = 0) {
  FakeHubOptions o;
  o.repos[0].total_size = total_size;
  o.repos[0].shards = shards;
  o.hub_args = std::move(args);
  return o;
}

FakeRepoSpec Spec(const std::string& repo, bool extra_revision, bool is_private, bool gated) {
  FakeRepoSpec s;
  s.repo = repo;
  s.extra_revision = extra_revision;
  s.is_private = is_private;
  s.gated = gated;
  return s;
}

// BlobRef for a manifest file.
BlobRef BlobFor(const FakeHubProcess& hub, const std::string& commit, const std::string& path,
                const std::string& repo = "org/tiny") {
  const json* f = hub.FileAt(commit, path, repo);
  EXPECT_NE(f, nullptr) << path;
  FileEntry e;
  e.path = path;
  if (f) {
    e.size = (*f)["size"].get<uint64_t>();
    e.git_oid = (*f)["git_oid"].get<std::string>();
    if ((*f)["sha256"].is_string()) e.sha256 = (*f)["sha256"].get<std::string>();
  }
  return BlobRef::For(Repo(repo), commit, e);
}

std::vector<std::string> LfsFiles(const FakeHubProcess& hub, const std::string& commit) {
  std::vector<std::string> out;
  for (const json& f : hub.manifest()["commits"][commit]["files"])
    if (f.value("lfs", false)) out.push_back(f["path"].get<std::string>());
  return out;
}

std::vector<std::string> SmallFiles(const FakeHubProcess& hub, const std::string& commit) {
  std::vector<std::string> out;
  for (const json& f : hub.manifest()["commits"][commit]["files"])
    if (!f.value("lfs", false) && f["size"].get<uint64_t>() > 0) out.push_back(f["path"].get<std::string>());
  return out;
}

int CountLog(const json& log, const std::string& listener, const std::string& method,
             const std::string& path_part) {
  int n = 0;
  for (const json& r : log)
    if (r["listener"] == listener && r["method"] == method &&
        r["path"].get<std::string>().find(path_part) != std::string::npos)
      ++n;
  return n;
}

// ---------------------------------------------------------------------------------------------
// Revision resolution and listing.

class HubApiTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    FakeHubOptions o;
    o.repos = {Spec("org/tiny", true, false, false), Spec("org/private", false, true, false),
               Spec("org/gated", false, false, true)};
    o.hub_args = {"--page-size", "2", "--token", "good-token", "--unapproved-token", "meh-token"};
    hub_ = new FakeHubProcess(o);
  }
  static void TearDownTestSuite() {
    delete hub_;
    hub_ = nullptr;
  }
  void SetUp() override { ASSERT_TRUE(hub_->ok()); }
  static FakeHubProcess* hub_;
};
FakeHubProcess* HubApiTest::hub_ = nullptr;

TEST_F(HubApiTest, ResolvesBranchTagShortShaAndPr) {
  HttpHubApi api(Opts(hub_->endpoint()));
  const std::string main = hub_->CommitOf("main");
  const std::string v1 = hub_->CommitOf("v1.0");
  ASSERT_EQ(main.size(), 40u);
  ASSERT_NE(main, v1);
  EXPECT_EQ(*api.ResolveRevision(Repo(), ""), main);
  EXPECT_EQ(*api.ResolveRevision(Repo(), "main"), main);
  EXPECT_EQ(*api.ResolveRevision(Repo(), "v1.0"), v1);
  EXPECT_EQ(*api.ResolveRevision(Repo(), main.substr(0, 8)), main);
  EXPECT_EQ(*api.ResolveRevision(Repo(), main), main);
  EXPECT_EQ(*api.ResolveRevision(Repo(), "refs/pr/1"), hub_->CommitOf("refs/pr/1"));
  // The slash must be encoded (%2F); the fake hub logs the raw path.
  json log = hub_->Log();
  EXPECT_GE(CountLog(log, "hub", "GET", "/revision/refs%2Fpr%2F1"), 1);
}

TEST_F(HubApiTest, UnknownRevisionAndRepo) {
  HttpHubApi api(Opts(hub_->endpoint()));
  auto r = api.ResolveRevision(Repo(), "no-such-branch");
  EXPECT_EQ(r.status().code(), Code::kNotFound) << r.status().ToString();
  // Anonymous, missing repo: a bare 401 (private or missing) -> NotFound mentioning a token.
  auto missing = api.ResolveRevision(Repo("org/nope"), "main");
  EXPECT_EQ(missing.status().code(), Code::kNotFound) << missing.status().ToString();
  EXPECT_NE(missing.status().message().find("token"), std::string::npos);
  FetchOptions o = Opts(hub_->endpoint());
  o.token = "good-token";
  HttpHubApi authed(o);
  EXPECT_EQ(authed.ResolveRevision(Repo("org/nope"), "main").status().code(), Code::kNotFound);
}

TEST_F(HubApiTest, PrivateAndGatedRepos) {
  HttpHubApi anon(Opts(hub_->endpoint()));
  EXPECT_EQ(anon.ResolveRevision(Repo("org/private"), "main").status().code(), Code::kNotFound);
  FetchOptions o = Opts(hub_->endpoint());
  o.token = "good-token";
  HttpHubApi authed(o);
  auto p = authed.ResolveRevision(Repo("org/private"), "main");
  ASSERT_TRUE(p.ok()) << p.status().ToString();
  EXPECT_EQ(*p, hub_->CommitOf("main", "org/private"));
  auto commit = *p;
  EXPECT_TRUE(authed.ListTree(Repo("org/private"), commit).ok());
  EXPECT_EQ(anon.ListTree(Repo("org/private"), commit).status().code(), Code::kNotFound);
  // Wrong token: PermissionDenied, not a retry storm.
  o.token = "bad-token";
  HttpHubApi bad(o);
  EXPECT_EQ(bad.ResolveRevision(Repo("org/private"), "main").status().code(), Code::kPermissionDenied);
  EXPECT_EQ(bad.Stats().retries, 0u);
  // Gated: content refused without approval.
  const std::string gc = hub_->CommitOf("main", "org/gated");
  BlobRef blob = BlobFor(*hub_, gc, "config.json", "org/gated");
  std::vector<char> buf(blob.size);
  HttpRangeSource anon_src(Opts(hub_->endpoint()));
  EXPECT_EQ(anon_src.ReadAt(blob, 0, buf.size(), buf.data(), nullptr).code(), Code::kPermissionDenied);
  o.token = "meh-token";
  HttpRangeSource meh_src(o);
  EXPECT_EQ(meh_src.ReadAt(blob, 0, buf.size(), buf.data(), nullptr).code(), Code::kPermissionDenied);
  o.token = "good-token";
  HttpRangeSource good_src(o);
  EXPECT_TRUE(good_src.ReadAt(blob, 0, buf.size(), buf.data(), nullptr).ok());
}

void ExpectTreeMatchesManifest(const FakeHubProcess& hub, const std::string& commit,
                               const std::vector<FileEntry>& got) {
  std::map<std::string, const FileEntry*> by_path;
  for (const FileEntry& e : got) EXPECT_TRUE(by_path.emplace(e.path, &e).second) << e.path;
  std::set<std::string> dirs;
  size_t files = 0;
  for (const json& f : hub.manifest()["commits"][commit]["files"]) {
    std::string p = f["path"];
    ++files;
    for (size_t s = p.find('/'); s != std::string::npos; s = p.find('/', s + 1)) dirs.insert(p.substr(0, s));
    auto it = by_path.find(p);
    ASSERT_NE(it, by_path.end()) << p;
    const FileEntry& e = *it->second;
    EXPECT_FALSE(e.is_dir) << p;
    EXPECT_EQ(e.size, f["size"].get<uint64_t>()) << p;
    EXPECT_EQ(e.git_oid, f["git_oid"].get<std::string>()) << p;
    EXPECT_EQ(e.sha256, f["sha256"].is_string() ? f["sha256"].get<std::string>() : "") << p;
  }
  for (const std::string& d : dirs) {
    auto it = by_path.find(d);
    ASSERT_NE(it, by_path.end()) << d;
    EXPECT_TRUE(it->second->is_dir);
  }
  EXPECT_EQ(got.size(), files + dirs.size());
}

TEST_F(HubApiTest, PaginatedTreeEqualsManifest) {
  HttpHubApi api(Opts(hub_->endpoint()));
  ASSERT_TRUE(hub_->ClearLog());
  for (const char* ref : {"main", "v1.0"}) {
    const std::string commit = hub_->CommitOf(ref);
    auto tree = api.ListTree(Repo(), commit);
    ASSERT_TRUE(tree.ok()) << tree.status().ToString();
    ExpectTreeMatchesManifest(*hub_, commit, *tree);
  }
  // Page size 2: many pages were fetched.
  EXPECT_GE(CountLog(hub_->Log(), "hub", "GET", "/tree/"), 6);
  EXPECT_EQ(api.ListTree(Repo(), "main").status().code(), Code::kInvalidArgument);  // not a commit
  EXPECT_EQ(api.ListTree(Repo(), std::string(40, 'a')).status().code(), Code::kNotFound);
}

TEST_F(HubApiTest, AResolutionListsTheCommitSoItsListingCostsNoRequest) {
  HttpHubApi api(Opts(hub_->endpoint()));
  ASSERT_TRUE(hub_->ClearLog());
  auto commit = api.ResolveRevision(Repo(), "main");
  ASSERT_TRUE(commit.ok()) << commit.status().ToString();
  auto tree = api.ListTree(Repo(), *commit);
  ASSERT_TRUE(tree.ok()) << tree.status().ToString();
  ExpectTreeMatchesManifest(*hub_, *commit, *tree);  // directories synthesized, LFS sizes and hashes
  json log = hub_->Log();
  EXPECT_EQ(CountLog(log, "hub", "GET", "/tree/"), 0);
  EXPECT_EQ(CountLog(log, "hub", "GET", "/revision/main"), 1);
  // The listing is taken once: a second listing of the commit asks /tree, and gets the same.
  auto again = api.ListTree(Repo(), *commit);
  ASSERT_TRUE(again.ok()) << again.status().ToString();
  ExpectTreeMatchesManifest(*hub_, *commit, *again);
  EXPECT_GE(CountLog(hub_->Log(), "hub", "GET", "/tree/"), 1);
  // Another repo's resolution does not answer for this one.
  FetchOptions o = Opts(hub_->endpoint());
  o.token = "good-token";
  HttpHubApi authed(o);
  ASSERT_TRUE(authed.ResolveRevision(Repo("org/private"), "main").ok());
  ASSERT_TRUE(hub_->ClearLog());
  EXPECT_TRUE(authed.ListTree(Repo(), *commit).ok());
  EXPECT_GE(CountLog(hub_->Log(), "hub", "GET", "/tree/"), 1);
}

TEST_F(HubApiTest, PageLimitOption) {
  FetchOptions o = Opts(hub_->endpoint());
  o.tree_page_limit = 3;
  HttpHubApi api(o);
  ASSERT_TRUE(hub_->ClearLog());
  const std::string commit = hub_->CommitOf("main");
  auto tree = api.ListTree(Repo(), commit);
  ASSERT_TRUE(tree.ok()) << tree.status().ToString();
  ExpectTreeMatchesManifest(*hub_, commit, *tree);
  json log = hub_->Log();
  bool saw_limit = false;
  for (const json& r : log)
    if (r["query"].get<std::string>().find("limit=3") != std::string::npos) saw_limit = true;
  EXPECT_TRUE(saw_limit);
}

TEST(HubApiMirrorTest, LinkOnAnotherOriginIsRebased) {
  FakeHubProcess hub(HubWith({"--page-size", "3", "--link-host", "https://huggingface.co"}));
  ASSERT_TRUE(hub.ok());
  FetchOptions o = Opts(hub.endpoint());
  o.token = "tok";
  HttpHubApi api(o);
  const std::string commit = hub.CommitOf("main");
  auto tree = api.ListTree(Repo(), commit);
  ASSERT_TRUE(tree.ok()) << tree.status().ToString();
  ExpectTreeMatchesManifest(hub, commit, *tree);
}

TEST(HubApiRetryTest, RetriesInjected503s) {
  FakeHubProcess hub;
  ASSERT_TRUE(hub.ok());
  HttpHubApi api(Opts(hub.endpoint()));
  ASSERT_TRUE(hub.SetFaults({{"where", "hub"}, {"fail_next", 3}}));
  auto r = api.ResolveRevision(Repo(), "main");
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(api.Stats().retries, 3u);
  ASSERT_TRUE(hub.SetFaults({{"where", "hub"}, {"fail_next", 100}}));
  FetchOptions o = Opts(hub.endpoint());
  o.max_retries = 2;
  HttpHubApi impatient(o);
  EXPECT_EQ(impatient.ResolveRevision(Repo(), "main").status().code(), Code::kUnavailable);
  EXPECT_EQ(impatient.Stats().requests, 3u);
}

TEST(HubApiRetryTest, HonoursRetryAfter) {
  FakeHubProcess hub;
  ASSERT_TRUE(hub.ok());
  HttpHubApi api(Opts(hub.endpoint()));
  ASSERT_TRUE(hub.SetFaults({{"where", "hub"}, {"status_override", {{"code", 429}, {"retry_after", 1}}}}));
  auto t0 = Clock::now();
  auto r = api.ResolveRevision(Repo(), "main");
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_GE(Clock::now() - t0, std::chrono::milliseconds(950));
}

TEST(HubApiRenameTest, FollowsRelativeRedirectWithToken) {
  FakeHubProcess hub(HubWith({"--alias", "org/old-name=org/tiny"}));
  ASSERT_TRUE(hub.ok());
  FetchOptions o = Opts(hub.endpoint());
  o.token = "tok";
  HttpHubApi api(o);
  auto r = api.ResolveRevision(Repo("org/old-name"), "main");
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(*r, hub.CommitOf("main"));
  for (const json& rec : hub.Log()) EXPECT_TRUE(rec["auth"].get<bool>()) << rec.dump();
  // Reads through the old name work too (relative 307 on /resolve).
  HttpRangeSource src(o);
  BlobRef b = BlobFor(hub, *r, "config.json");
  b.repo = Repo("org/old-name");
  std::string buf(b.size, '\0');
  ASSERT_TRUE(src.ReadAt(b, 0, buf.size(), buf.data(), nullptr).ok());
  EXPECT_EQ(buf, hub.Content(*r, "config.json"));
}

// ---------------------------------------------------------------------------------------------
// Reads.

class ReadSmallTest : public ::testing::TestWithParam<std::string> {};

TEST_P(ReadSmallTest, ByteExact) {
  FakeHubProcess hub(HubWith({"--small-mode", GetParam()}));
  ASSERT_TRUE(hub.ok());
  HttpRangeSource src(Opts(hub.endpoint()));
  const std::string commit = hub.CommitOf("main");
  const std::string hub_label = "127.0.0.1:" + std::to_string(hub.hub_port());
  for (const std::string& path : SmallFiles(hub, commit)) {
    BlobRef b = BlobFor(hub, commit, path);
    std::string want = hub.Content(commit, path);
    ASSERT_EQ(want.size(), b.size);
    std::string got(b.size, '\0');
    std::string served_by;
    Status s = src.ReadAt(b, 0, b.size, got.data(), &served_by);
    ASSERT_TRUE(s.ok()) << path << ": " << s.ToString();
    EXPECT_EQ(got, want) << path;
    EXPECT_EQ(served_by, hub_label);
    // An inner range and the last byte.
    if (b.size > 10) {
      std::string part(b.size / 2, '\0');
      ASSERT_TRUE(src.ReadAt(b, 3, part.size(), part.data(), nullptr).ok());
      EXPECT_EQ(part, want.substr(3, part.size()));
    }
    char last = 0;
    ASSERT_TRUE(src.ReadAt(b, b.size - 1, 1, &last, nullptr).ok());
    EXPECT_EQ(last, want.back());
  }
  // Resolution is cached: one resolve HEAD per file, then only GETs.
  json log = hub.Log();
  for (const std::string& path : SmallFiles(hub, commit))
    EXPECT_EQ(CountLog(log, "hub", "HEAD", "/resolve/" + commit + "/" + path), 1) << path;
  for (const json& r : log) {
    if (r["method"] == "GET") {
      EXPECT_EQ(r["accept_encoding"], "identity");
      EXPECT_TRUE(r["range"].is_string());
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Modes, ReadSmallTest, ::testing::Values("direct", "redirect"));

TEST(ReadLfsTest, RandomOffsetsAndLastByte) {
  FakeHubProcess hub(HubWith({}, 6000000, 2));
  ASSERT_TRUE(hub.ok());
  HttpRangeSource src(Opts(hub.endpoint()));
  const std::string commit = hub.CommitOf("main");
  const std::string cdn_label = "127.0.0.1:" + std::to_string(hub.cdn_port());
  std::mt19937_64 rng(42);
  for (const std::string& path : LfsFiles(hub, commit)) {
    BlobRef b = BlobFor(hub, commit, path);
    ASSERT_EQ(b.hash_kind, HashKind::kSha256);
    std::string want = hub.Content(commit, path);
    ASSERT_EQ(want.size(), b.size);
    for (int i = 0; i < 20; ++i) {
      uint64_t off = rng() % b.size;
      size_t len = 1 + rng() % std::min<uint64_t>(b.size - off, 1 << 20);
      std::string got(len, '\0');
      std::string served_by;
      Status s = src.ReadAt(b, off, len, got.data(), &served_by);
      ASSERT_TRUE(s.ok()) << s.ToString();
      ASSERT_EQ(got, want.substr(off, len)) << path << " @" << off << "+" << len;
      EXPECT_EQ(served_by, cdn_label);
    }
    char last = 0;
    ASSERT_TRUE(src.ReadAt(b, b.size - 1, 1, &last, nullptr).ok());
    EXPECT_EQ(last, want.back());
    std::string whole(b.size, '\0');
    ASSERT_TRUE(src.ReadAt(b, 0, b.size, whole.data(), nullptr).ok());
    EXPECT_TRUE(whole == want);
  }
  // Preconditions are checked, not sent.
  BlobRef b = BlobFor(hub, commit, LfsFiles(hub, commit)[0]);
  char c;
  EXPECT_EQ(src.ReadAt(b, b.size, 1, &c, nullptr).code(), Code::kInvalidArgument);
  EXPECT_EQ(src.ReadAt(b, 0, 0, &c, nullptr).code(), Code::kInvalidArgument);
  EXPECT_EQ(src.ReadAt(b, UINT64_MAX, 2, &c, nullptr).code(), Code::kInvalidArgument);
  // A file missing at that commit.
  BlobRef gone = b;
  gone.path = "no/such/file.bin";
  EXPECT_EQ(src.ReadAt(gone, 0, 1, &c, nullptr).code(), Code::kNotFound);
}

TEST(ReadLfsTest, TokenReachesHubButNeverCdn) {
  FakeHubProcess hub(HubWith({"--small-mode", "redirect", "--token", "s3cret", "--reject-cdn-auth"}));
  ASSERT_TRUE(hub.ok());
  FetchOptions o = Opts(hub.endpoint());
  o.token = "s3cret";
  HttpHubApi api(o);
  HttpRangeSource src(api.client());  // shared client: shared pool and counters
  const std::string commit = *api.ResolveRevision(Repo(), "main");
  auto tree = api.ListTree(Repo(), commit);
  ASSERT_TRUE(tree.ok());
  int reads = 0;
  for (const FileEntry& e : *tree) {
    if (e.is_dir || e.size == 0) continue;
    BlobRef b = BlobRef::For(Repo(), commit, e);
    std::string got(std::min<uint64_t>(b.size, 100000), '\0');
    Status s = src.ReadAt(b, 0, got.size(), got.data(), nullptr);
    ASSERT_TRUE(s.ok()) << e.path << ": " << s.ToString();
    EXPECT_EQ(got, hub.Content(commit, e.path).substr(0, got.size()));
    ++reads;
  }
  ASSERT_GT(reads, 3);
  int hub_reqs = 0, cdn_reqs = 0;
  for (const json& r : hub.Log()) {
    if (r["listener"] == "hub") {
      ++hub_reqs;
      EXPECT_TRUE(r["auth"].get<bool>()) << r.dump();
    } else {
      ++cdn_reqs;
      EXPECT_FALSE(r["auth"].get<bool>()) << r.dump();
    }
  }
  EXPECT_GT(hub_reqs, 0);
  EXPECT_GT(cdn_reqs, 0);
  EXPECT_EQ(hub.Stats()["auth_to_cdn"], 0);
  FetchStats st = src.Stats();
  EXPECT_EQ(st.requests, static_cast<uint64_t>(hub_reqs + cdn_reqs));
  EXPECT_GT(st.bytes_received, 0u);
}

// A signed URL is used until kExpiryMargin before its Expires, then resolved again. The URL clock
// moves; nothing sleeps. (The fake hub's URLs live 120 s, rounded up to a whole second: the
// client keeps one for 89-91 s of its clock.)
TEST(ReadLfsTest, ReResolvesAfterUrlExpiry) {
  FakeHubProcess hub(HubWith({"--url-ttl", "120"}));
  ASSERT_TRUE(hub.ok());
  testing::SteppedClock clock;
  HttpRangeSource src(Opts(hub.endpoint()), clock.Fn());
  const std::string commit = hub.CommitOf("main");
  const std::string path = LfsFiles(hub, commit)[0];
  BlobRef b = BlobFor(hub, commit, path);
  std::string want = hub.Content(commit, path);
  std::string got(1000, '\0');
  ASSERT_TRUE(src.ReadAt(b, 0, 1000, got.data(), nullptr).ok());
  EXPECT_EQ(CountLog(hub.Log(), "hub", "HEAD", path), 1);
  // Well inside the URL's life: the cached URL serves the read.
  clock.Advance(std::chrono::seconds(60));
  ASSERT_TRUE(src.ReadAt(b, 2000, 1000, got.data(), nullptr).ok());
  EXPECT_EQ(got, want.substr(2000, 1000));
  EXPECT_EQ(CountLog(hub.Log(), "hub", "HEAD", path), 1);
  // Past Expires - kExpiryMargin: resolved again before the GET.
  clock.Advance(std::chrono::seconds(40));
  ASSERT_TRUE(src.ReadAt(b, 5000, 1000, got.data(), nullptr).ok());
  EXPECT_EQ(got, want.substr(5000, 1000));
  json log = hub.Log();
  EXPECT_EQ(CountLog(log, "hub", "HEAD", path), 2);
  for (const json& r : log)
    if (r["listener"] == "cdn") {
      EXPECT_NE(r["status"], 403) << r.dump();
    }
}

// A URL that expires within kExpiryMargin of being resolved serves only the read it was resolved
// for: the next read resolves again, without waiting for the URL to expire.
TEST(ReadLfsTest, UrlExpiringWithinTheMarginServesOneRead) {
  FakeHubProcess hub(HubWith({"--url-ttl", "1"}));
  ASSERT_TRUE(hub.ok());
  testing::SteppedClock clock;  // never moved: only the margin decides
  HttpRangeSource src(Opts(hub.endpoint()), clock.Fn());
  const std::string commit = hub.CommitOf("main");
  const std::string path = LfsFiles(hub, commit)[0];
  BlobRef b = BlobFor(hub, commit, path);
  std::string want = hub.Content(commit, path);
  std::string got(1000, '\0');
  ASSERT_TRUE(src.ReadAt(b, 0, 1000, got.data(), nullptr).ok());
  ASSERT_TRUE(src.ReadAt(b, 5000, 1000, got.data(), nullptr).ok());
  EXPECT_EQ(got, want.substr(5000, 1000));
  EXPECT_EQ(CountLog(hub.Log(), "hub", "HEAD", path), 2);
}

TEST(ReadLfsTest, CdnRefusalDropsUrlAndReResolvesOnce) {
  FakeHubProcess hub;
  ASSERT_TRUE(hub.ok());
  HttpRangeSource src(Opts(hub.endpoint()));
  const std::string commit = hub.CommitOf("main");
  const std::string path = LfsFiles(hub, commit)[0];
  BlobRef b = BlobFor(hub, commit, path);
  std::string got(4096, '\0');
  ASSERT_TRUE(src.ReadAt(b, 0, got.size(), got.data(), nullptr).ok());
  // The CDN now refuses the (cached) URL once: one re-resolution, then success.
  ASSERT_TRUE(hub.SetFaults({{"where", "cdn"}, {"status_override", {{"code", 403}, {"count", 1}}}}));
  ASSERT_TRUE(hub.ClearLog());
  ASSERT_TRUE(src.ReadAt(b, 4096, got.size(), got.data(), nullptr).ok());
  EXPECT_EQ(got, hub.Content(commit, path).substr(4096, 4096));
  EXPECT_EQ(CountLog(hub.Log(), "hub", "HEAD", path), 1);
  // Refusing forever: PermissionDenied after exactly one re-resolution.
  ASSERT_TRUE(hub.SetFaults({{"where", "cdn"}, {"status_override", {{"code", 403}, {"count", 100}}}}));
  ASSERT_TRUE(hub.ClearLog());
  EXPECT_EQ(src.ReadAt(b, 0, 10, got.data(), nullptr).code(), Code::kPermissionDenied);
  EXPECT_EQ(CountLog(hub.Log(), "hub", "HEAD", path), 1);
}

TEST(ReadFaultTest, RetriesInjected503sOnCdnAndHub) {
  FakeHubProcess hub;
  ASSERT_TRUE(hub.ok());
  HttpRangeSource src(Opts(hub.endpoint()));
  const std::string commit = hub.CommitOf("main");
  const std::string path = LfsFiles(hub, commit)[0];
  BlobRef b = BlobFor(hub, commit, path);
  std::string want = hub.Content(commit, path);
  std::string got(100000, '\0');
  ASSERT_TRUE(hub.SetFaults({{"where", "both"}, {"fail_next", 3}}));
  ASSERT_TRUE(src.ReadAt(b, 1000, got.size(), got.data(), nullptr).ok());
  EXPECT_EQ(got, want.substr(1000, got.size()));
  EXPECT_EQ(src.Stats().retries, 3u);
  FetchOptions o = Opts(hub.endpoint());
  o.max_retries = 2;
  HttpRangeSource impatient(o);
  ASSERT_TRUE(hub.SetFaults({{"where", "cdn"}, {"fail_next", 100}}));
  Status s = impatient.ReadAt(b, 0, 100, got.data(), nullptr);
  EXPECT_EQ(s.code(), Code::kUnavailable) << s.ToString();
}

TEST(ReadFaultTest, RetriesTruncatedAndResetBodies) {
  FakeHubProcess hub(HubWith({}, 8000000, 1));
  ASSERT_TRUE(hub.ok());
  FetchOptions o = Opts(hub.endpoint());
  o.max_retries = 16;  // each attempt fails with p=0.5: 2^-17 per read
  o.retry_base_ms = 1;
  HttpRangeSource src(o);
  const std::string commit = hub.CommitOf("main");
  const std::string path = LfsFiles(hub, commit)[0];
  BlobRef b = BlobFor(hub, commit, path);
  std::string want = hub.Content(commit, path);
  for (const char* fault : {"truncate_rate", "reset_rate"}) {
    ASSERT_TRUE(hub.SetFaults({{"where", "cdn"}, {fault, 0.5}}));
    uint64_t retries_before = src.Stats().retries;
    for (int i = 0; i < 8; ++i) {
      uint64_t off = (i * 977777) % (b.size - 500000);
      std::string got(500000, '\0');
      Status s = src.ReadAt(b, off, got.size(), got.data(), nullptr);
      ASSERT_TRUE(s.ok()) << fault << ": " << s.ToString();
      ASSERT_TRUE(got == want.substr(off, got.size())) << fault;
    }
    EXPECT_GT(src.Stats().retries, retries_before) << fault;
  }
  // Always truncated: an error (not a hang, not a short success).
  ASSERT_TRUE(hub.SetFaults({{"where", "cdn"}, {"truncate_rate", 1.0}}));
  FetchOptions o2 = Opts(hub.endpoint());
  o2.max_retries = 2;
  HttpRangeSource src2(o2);
  std::string got(100000, '\0');
  EXPECT_EQ(src2.ReadAt(b, 0, got.size(), got.data(), nullptr).code(), Code::kUnavailable);
}

TEST(ReadFaultTest, StallIsAnErrorInBoundedTime) {
  FakeHubProcess hub;
  ASSERT_TRUE(hub.ok());
  FetchOptions o = Opts(hub.endpoint());
  o.stall_timeout_s = 1;
  o.stall_min_bytes_per_s = 1024;
  o.max_retries = 1;
  HttpRangeSource src(o);
  const std::string commit = hub.CommitOf("main");
  const std::string path = LfsFiles(hub, commit)[0];
  BlobRef b = BlobFor(hub, commit, path);
  ASSERT_TRUE(hub.SetFaults({{"where", "cdn"}, {"stall_s", 30}}));
  std::string got(200000, '\0');
  auto t0 = Clock::now();
  Status s = src.ReadAt(b, 0, got.size(), got.data(), nullptr);
  auto elapsed = Clock::now() - t0;
  EXPECT_EQ(s.code(), Code::kUnavailable) << s.ToString();
  // Two attempts, each cut ~1-2 s after the body stops (not the 30 s the server would wait).
  EXPECT_LT(elapsed, std::chrono::seconds(6));
  EXPECT_GE(src.Stats().retries, 1u);
  EXPECT_NE(s.message().find("stalled"), std::string::npos) << s.ToString();
}

TEST(ReadFaultTest, HardCeilingStopsATrickle) {
  FakeHubProcess hub;
  ASSERT_TRUE(hub.ok());
  FetchOptions o = Opts(hub.endpoint());
  o.stall_timeout_s = 10;
  o.stall_min_bytes_per_s = 1;  // the trickle stays above the stall rate...
  o.request_timeout_s = 2;      // ...but not under the ceiling
  o.max_retries = 0;
  HttpRangeSource src(o);
  const std::string commit = hub.CommitOf("main");
  BlobRef b = BlobFor(hub, commit, LfsFiles(hub, commit)[0]);
  ASSERT_TRUE(hub.SetFaults({{"where", "cdn"}, {"rate_bytes_per_s", 20000}}));
  std::string got(1000000, '\0');
  auto t0 = Clock::now();
  EXPECT_EQ(src.ReadAt(b, 0, got.size(), got.data(), nullptr).code(), Code::kUnavailable);
  EXPECT_LT(Clock::now() - t0, std::chrono::seconds(6));
}

TEST(ReadFaultTest, CorruptBytesAreReturnedAsIs) {
  FakeHubProcess hub;
  ASSERT_TRUE(hub.ok());
  HttpRangeSource src(Opts(hub.endpoint()));
  const std::string commit = hub.CommitOf("main");
  const std::string path = LfsFiles(hub, commit)[0];
  BlobRef b = BlobFor(hub, commit, path);
  std::string want = hub.Content(commit, path).substr(0, 300000);
  ASSERT_TRUE(hub.SetFaults({{"where", "cdn"}, {"corrupt_paths", {path}}}));
  std::string got(want.size(), '\0');
  ASSERT_TRUE(src.ReadAt(b, 0, got.size(), got.data(), nullptr).ok());
  int diffs = 0;
  for (size_t i = 0; i < got.size(); ++i) diffs += got[i] != want[i];
  EXPECT_EQ(diffs, 1);
}

TEST(ReadConcurrencyTest, ManyThreadsOneStream) {
  // One large sequential stream split over threads in 4 MiB ranges, as the cache's prefetcher does.
  constexpr uint64_t kTotal = 64u << 20;
  FakeHubProcess hub(HubWith({}, kTotal, 1));
  ASSERT_TRUE(hub.ok());
  HttpRangeSource src(Opts(hub.endpoint()));
  const std::string commit = hub.CommitOf("main");
  const std::string path = LfsFiles(hub, commit)[0];
  BlobRef b = BlobFor(hub, commit, path);
  std::string want = hub.Content(commit, path);
  constexpr size_t kChunk = 4u << 20;
  const int kThreads = 8;
  std::vector<char> out(b.size);
  // Warm up (resolution, connections).
  ASSERT_TRUE(src.ReadAt(b, 0, 1, out.data(), nullptr).ok());
  for (int round = 0; round < 2; ++round) {
    std::atomic<uint64_t> next{0};
    std::atomic<int> errors{0};
    auto t0 = Clock::now();
    std::vector<std::thread> threads;
    for (int t = 0; t < kThreads; ++t) {
      threads.emplace_back([&] {
        for (;;) {
          uint64_t off = next.fetch_add(kChunk);
          if (off >= b.size) return;
          size_t len = std::min<uint64_t>(kChunk, b.size - off);
          if (!src.ReadAt(b, off, len, out.data() + off, nullptr).ok()) errors++;
        }
      });
    }
    for (auto& th : threads) th.join();
    double secs = std::chrono::duration<double>(Clock::now() - t0).count();
    EXPECT_EQ(errors.load(), 0);
    ASSERT_TRUE(memcmp(out.data(), want.data(), b.size) == 0);
    printf("[ perf ] round %d: %.1f MiB in %.3f s = %.0f MiB/s over %d threads (fake hub, Python)\n", round,
           b.size / 1048576.0, secs, b.size / 1048576.0 / secs, kThreads);
  }
  EXPECT_EQ(CountLog(hub.Log(), "hub", "HEAD", path), 1);  // resolution shared by all threads
}

// CDN connections (client ports) of the ranged GETs in a fake hub log, and how many GETs there were.
std::pair<std::set<int>, int> CdnGetConnections(const json& log) {
  std::set<int> ports;
  int gets = 0;
  for (const json& r : log) {
    if (r["listener"] != "cdn" || r["method"] != "GET") continue;
    ++gets;
    if (r["client_port"].is_number()) ports.insert(r["client_port"].get<int>());
  }
  return {ports, gets};
}

TEST(ReadConnectionTest, ChunksReuseKeepAliveConnections) {
  // A far link lives on keep-alive: every new connection pays a connect RTT and TCP slow start
  // again (at 200 ms RTT and 8 MiB/s per connection, ~1.5 s before a 4 MiB chunk runs at full
  // speed). So the chunks of a stream must reuse pooled connections: one reader thread keeps one
  // CDN connection, N threads at most N, however many chunks they fetch.
  constexpr uint64_t kTotal = 8u << 20;
  FakeHubProcess hub(HubWith({}, kTotal, 1));
  ASSERT_TRUE(hub.ok());
  HttpRangeSource src(Opts(hub.endpoint()));
  const std::string commit = hub.CommitOf("main");
  const std::string path = LfsFiles(hub, commit)[0];
  BlobRef b = BlobFor(hub, commit, path);
  std::string want = hub.Content(commit, path);
  constexpr size_t kChunk = 256u << 10;
  std::vector<char> out(b.size);
  ASSERT_TRUE(hub.ClearLog());
  for (uint64_t off = 0; off < b.size; off += kChunk) {
    size_t len = std::min<uint64_t>(kChunk, b.size - off);
    ASSERT_TRUE(src.ReadAt(b, off, len, out.data() + off, nullptr).ok());
  }
  ASSERT_TRUE(memcmp(out.data(), want.data(), b.size) == 0);
  const int chunks = static_cast<int>((b.size + kChunk - 1) / kChunk);
  auto [one, gets] = CdnGetConnections(hub.Log());
  EXPECT_EQ(gets, chunks);
  EXPECT_EQ(one.size(), 1u) << "sequential chunks on one thread used " << one.size() << " connections";

  ASSERT_TRUE(hub.ClearLog());
  constexpr int kThreads = 4;
  std::atomic<uint64_t> next{0};
  std::atomic<int> errors{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&] {
      for (;;) {  // the file twice over: each thread fetches many chunks
        uint64_t off = next.fetch_add(kChunk);
        if (off >= 2 * b.size) return;
        uint64_t o = off % b.size;
        size_t len = std::min<uint64_t>(kChunk, b.size - o);
        std::vector<char> buf(len);
        if (!src.ReadAt(b, o, len, buf.data(), nullptr).ok() || memcmp(buf.data(), want.data() + o, len) != 0)
          errors++;
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(errors.load(), 0);
  auto [many, gets2] = CdnGetConnections(hub.Log());
  EXPECT_EQ(gets2, 2 * chunks);
  EXPECT_GE(many.size(), 1u);
  EXPECT_LE(many.size(), static_cast<size_t>(kThreads)) << "connections were not reused across chunks";
}

// ---------------------------------------------------------------------------------------------
// A scripted server for protocol violations: every connection gets the handler's raw answer,
// then is closed.

class ScriptedServer {
 public:
  using Handler = std::function<std::string(const std::string& request_head)>;
  explicit ScriptedServer(Handler h) : handler_(std::move(h)) {
    fd_ = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int one = 1;
    setsockopt(fd_, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    bind(fd_, reinterpret_cast<sockaddr*>(&a), sizeof(a));
    listen(fd_, 64);
    socklen_t len = sizeof(a);
    getsockname(fd_, reinterpret_cast<sockaddr*>(&a), &len);
    port_ = ntohs(a.sin_port);
    thread_ = std::thread([this] { Loop(); });
  }
  ~ScriptedServer() {
    stop_ = true;
    thread_.join();
    close(fd_);
  }
  std::string endpoint() const { return "http://127.0.0.1:" + std::to_string(port_); }
  std::vector<std::string> requests() {
    std::lock_guard<std::mutex> l(mu_);
    return requests_;
  }

 private:
  void Loop() {
    while (!stop_) {
      pollfd p{fd_, POLLIN, 0};
      if (poll(&p, 1, 50) <= 0) continue;
      int c = accept4(fd_, nullptr, nullptr, SOCK_CLOEXEC);
      if (c < 0) continue;
      std::string head;
      char buf[4096];
      while (head.find("\r\n\r\n") == std::string::npos) {
        ssize_t n = recv(c, buf, sizeof(buf), 0);
        if (n <= 0) break;
        head.append(buf, n);
      }
      {
        std::lock_guard<std::mutex> l(mu_);
        requests_.push_back(head);
      }
      std::string resp = handler_(head);
      size_t off = 0;
      while (off < resp.size()) {
        ssize_t n = send(c, resp.data() + off, resp.size() - off, MSG_NOSIGNAL);
        if (n <= 0) break;
        off += n;
      }
      shutdown(c, SHUT_WR);
      close(c);
    }
  }
  Handler handler_;
  int fd_ = -1;
  int port_ = 0;
  std::atomic<bool> stop_{false};
  std::thread thread_;
  std::mutex mu_;
  std::vector<std::string> requests_;
};

std::string Content100() {
  std::string s;
  for (int i = 0; i < 100; ++i) s += static_cast<char>('A' + i % 26);
  return s;
}

BlobRef Blob100() {
  BlobRef b;
  b.repo = Repo("org/x");
  b.commit = std::string(40, 'c');
  b.path = "f.bin";
  b.size = 100;
  return b;
}

// Answers HEAD with 200 (direct mode: read from the hub itself) and GET with `get_answer`.
ScriptedServer::Handler DirectThen(std::function<std::string(const std::string&)> get_answer) {
  return [get_answer](const std::string& req) -> std::string {
    if (req.rfind("HEAD ", 0) == 0)
      return "HTTP/1.1 200 OK\r\nContent-Length: 100\r\nConnection: close\r\n\r\n";
    return get_answer(req);
  };
}

FetchOptions FastOpts(const std::string& ep) {
  FetchOptions o = Opts(ep);
  o.max_retries = 2;
  o.retry_base_ms = 1;
  return o;
}

TEST(ScriptedTest, WrongContentRangeIsRejected) {
  ScriptedServer srv(DirectThen([](const std::string&) {
    return "HTTP/1.1 206 Partial Content\r\nContent-Range: bytes 0-9/100\r\nContent-Length: 10\r\n"
           "Connection: close\r\n\r\n" +
           Content100().substr(0, 10);
  }));
  HttpRangeSource src(FastOpts(srv.endpoint()));
  char buf[10];
  Status s = src.ReadAt(Blob100(), 10, 10, buf, nullptr);
  EXPECT_EQ(s.code(), Code::kInvalidArgument) << s.ToString();
  EXPECT_NE(s.message().find("Content-Range"), std::string::npos);
  // The GET asked for exactly our range, without compression.
  bool saw = false;
  for (const std::string& r : srv.requests()) {
    if (r.rfind("GET ", 0) == 0) {
      saw = true;
      EXPECT_NE(r.find("Range: bytes=10-19\r\n"), std::string::npos) << r;
      EXPECT_NE(r.find("Accept-Encoding: identity\r\n"), std::string::npos) << r;
    }
  }
  EXPECT_TRUE(saw);
}

TEST(ScriptedTest, WrongTotalIsRejected) {
  ScriptedServer srv(DirectThen([](const std::string&) {
    return "HTTP/1.1 206 Partial Content\r\nContent-Range: bytes 10-19/101\r\nContent-Length: 10\r\n"
           "Connection: close\r\n\r\n" +
           Content100().substr(10, 10);
  }));
  HttpRangeSource src(FastOpts(srv.endpoint()));
  char buf[10];
  EXPECT_EQ(src.ReadAt(Blob100(), 10, 10, buf, nullptr).code(), Code::kInvalidArgument);
}

TEST(ScriptedTest, MissingOrMalformedContentRangeIsRejected) {
  for (std::string cr : {"", "Content-Range: bytes */100\r\n", "Content-Range: bytes 10-19\r\n"}) {
    ScriptedServer srv(DirectThen([cr](const std::string&) {
      return "HTTP/1.1 206 Partial Content\r\n" + cr + "Content-Length: 10\r\nConnection: close\r\n\r\n" +
             Content100().substr(10, 10);
    }));
    HttpRangeSource src(FastOpts(srv.endpoint()));
    char buf[10];
    EXPECT_EQ(src.ReadAt(Blob100(), 10, 10, buf, nullptr).code(), Code::kInvalidArgument) << cr;
  }
}

TEST(ScriptedTest, MoreBytesThanAskedAreRejected) {
  ScriptedServer srv(DirectThen([](const std::string&) {
    // Right Content-Range, no Content-Length, 15 bytes until close.
    return "HTTP/1.1 206 Partial Content\r\nContent-Range: bytes 10-19/100\r\nConnection: close\r\n\r\n" +
           Content100().substr(10, 15);
  }));
  HttpRangeSource src(FastOpts(srv.endpoint()));
  char buf[10];
  EXPECT_EQ(src.ReadAt(Blob100(), 10, 10, buf, nullptr).code(), Code::kInvalidArgument);
}

// An honest server whose bodies break off after 4 bytes: each GET answers the range it was asked
// for (Content-Range and Content-Length of that range) but sends only its first 4 bytes.
ScriptedServer::Handler ShortBodies(std::vector<std::string>* ranges, std::mutex* mu) {
  return DirectThen([ranges, mu](const std::string& req) {
    size_t at = req.find("Range: bytes=");
    unsigned long long a = 0, b = 0;
    if (at != std::string::npos) sscanf(req.c_str() + at, "Range: bytes=%llu-%llu", &a, &b);
    {
      std::lock_guard<std::mutex> l(*mu);
      ranges->push_back(std::to_string(a) + "-" + std::to_string(b));
    }
    return "HTTP/1.1 206 Partial Content\r\nContent-Range: bytes " + std::to_string(a) + "-" +
           std::to_string(b) + "/100\r\nContent-Length: " + std::to_string(b - a + 1) +
           "\r\nConnection: close\r\n\r\n" + Content100().substr(a, 4);
  });
}

TEST(ScriptedTest, ShortBodyIsRetriedFromWhereItBrokeOffThenUnavailable) {
  std::vector<std::string> ranges;
  std::mutex mu;
  ScriptedServer srv(ShortBodies(&ranges, &mu));
  HttpRangeSource src(FastOpts(srv.endpoint()));
  char buf[20];
  std::vector<size_t> progress;
  Status s = src.ReadAtStreaming(Blob100(), 10, 20, buf, nullptr, [&](size_t n) { progress.push_back(n); });
  EXPECT_EQ(s.code(), Code::kUnavailable) << s.ToString();
  EXPECT_EQ(src.Stats().retries, 2u);
  // Each retry asked only for what had not arrived; the bytes that did are in place and final.
  std::lock_guard<std::mutex> l(mu);
  EXPECT_EQ(ranges, (std::vector<std::string>{"10-29", "14-29", "18-29"}));
  EXPECT_EQ(std::string(buf, 12), Content100().substr(10, 12));
  ASSERT_FALSE(progress.empty());
  EXPECT_EQ(progress.back(), 12u);
  EXPECT_TRUE(std::is_sorted(progress.begin(), progress.end()));
}

TEST(ScriptedTest, ResumedReadCompletesAcrossShortBodies) {
  std::vector<std::string> ranges;
  std::mutex mu;
  ScriptedServer srv(ShortBodies(&ranges, &mu));
  FetchOptions o = FastOpts(srv.endpoint());
  o.max_retries = 5;  // 4 bytes per answer: 5 answers bring 20
  HttpRangeSource src(o);
  char buf[20];
  ASSERT_TRUE(src.ReadAt(Blob100(), 10, 20, buf, nullptr).ok());
  EXPECT_EQ(std::string(buf, 20), Content100().substr(10, 20));
}

TEST(ScriptedTest, FullBodyAnswerToRangeIsSlicedWhenLengthMatches) {
  ScriptedServer srv(DirectThen([](const std::string&) {
    return "HTTP/1.1 200 OK\r\nContent-Length: 100\r\nConnection: close\r\n\r\n" + Content100();
  }));
  HttpRangeSource src(FastOpts(srv.endpoint()));
  std::string buf(17, '\0');
  ASSERT_TRUE(src.ReadAt(Blob100(), 42, 17, buf.data(), nullptr).ok());
  EXPECT_EQ(buf, Content100().substr(42, 17));
  // Without Content-Length too (read to EOF, length checked at the end).
  ScriptedServer srv2(DirectThen(
      [](const std::string&) { return "HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n" + Content100(); }));
  HttpRangeSource src2(FastOpts(srv2.endpoint()));
  ASSERT_TRUE(src2.ReadAt(Blob100(), 83, 17, buf.data(), nullptr).ok());
  EXPECT_EQ(buf, Content100().substr(83, 17));
}

TEST(ScriptedTest, FullBodyOfWrongLengthIsRejected) {
  for (const std::string& answer :
       {std::string("HTTP/1.1 200 OK\r\nContent-Length: 99\r\nConnection: close\r\n\r\n") +
            Content100().substr(0, 99),
        std::string("HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n") + Content100() + "xyz",
        std::string("HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n") + Content100().substr(0, 60)}) {
    ScriptedServer srv(DirectThen([answer](const std::string&) { return answer; }));
    HttpRangeSource src(FastOpts(srv.endpoint()));
    char buf[10];
    Status s = src.ReadAt(Blob100(), 0, 10, buf, nullptr);
    EXPECT_FALSE(s.ok()) << answer.substr(0, 40);
  }
}

TEST(ScriptedTest, CompressedAnswerIsRejected) {
  ScriptedServer srv(DirectThen([](const std::string&) {
    return "HTTP/1.1 206 Partial Content\r\nContent-Range: bytes 0-9/100\r\nContent-Encoding: gzip\r\n"
           "Content-Length: 10\r\nConnection: close\r\n\r\n0123456789";
  }));
  HttpRangeSource src(FastOpts(srv.endpoint()));
  char buf[10];
  EXPECT_EQ(src.ReadAt(Blob100(), 0, 10, buf, nullptr).code(), Code::kInvalidArgument);
}

TEST(ScriptedTest, Status416IsAnErrorWithoutRetries) {
  ScriptedServer srv(DirectThen([](const std::string&) {
    return std::string(
        "HTTP/1.1 416 Range Not Satisfiable\r\nContent-Range: bytes */50\r\nContent-Length: 0\r\n"
        "Connection: close\r\n\r\n");
  }));
  HttpRangeSource src(FastOpts(srv.endpoint()));
  char buf[10];
  EXPECT_EQ(src.ReadAt(Blob100(), 60, 10, buf, nullptr).code(), Code::kInvalidArgument);
  EXPECT_EQ(src.Stats().retries, 0u);
}

TEST(ScriptedTest, NonHttpRedirectIsRefused) {
  for (std::string loc : {"file:///etc/passwd", "ftp://127.0.0.1/x", "gopher://h/x", "javascript:alert(1)"}) {
    ScriptedServer srv([loc](const std::string&) {
      return "HTTP/1.1 302 Found\r\nLocation: " + loc + "\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
    });
    HttpRangeSource src(FastOpts(srv.endpoint()));
    char buf[10];
    EXPECT_EQ(src.ReadAt(Blob100(), 0, 10, buf, nullptr).code(), Code::kInvalidArgument) << loc;
    EXPECT_EQ(srv.requests().size(), 1u) << loc;
  }
}

TEST(ScriptedTest, RedirectLoopEnds) {
  ScriptedServer srv([](const std::string&) {
    return std::string(
        "HTTP/1.1 307 Temporary Redirect\r\nLocation: /again\r\nContent-Length: 0\r\n"
        "Connection: close\r\n\r\n");
  });
  HttpRangeSource src(FastOpts(srv.endpoint()));
  char buf[10];
  EXPECT_EQ(src.ReadAt(Blob100(), 0, 10, buf, nullptr).code(), Code::kInvalidArgument);
  EXPECT_EQ(srv.requests().size(), static_cast<size_t>(HttpRangeSource::kMaxRedirects + 1));
}

TEST(ScriptedTest, SameOriginAbsoluteRedirectKeepsTokenOtherOriginDropsIt) {
  ScriptedServer cdn([](const std::string&) {
    return "HTTP/1.1 206 Partial Content\r\nContent-Range: bytes 0-9/100\r\nContent-Length: 10\r\n"
           "Connection: close\r\n\r\n" +
           Content100().substr(0, 10);
  });
  std::string self;  // filled below, read by the handler
  std::mutex self_mu;
  ScriptedServer hub([&](const std::string& req) -> std::string {
    std::lock_guard<std::mutex> l(self_mu);
    if (req.find(" /org/x/resolve/") != std::string::npos)
      return "HTTP/1.1 307 Temporary Redirect\r\nLocation: " + self + "/moved\r\nContent-Length: 0\r\n\r\n";
    return "HTTP/1.1 302 Found\r\nLocation: " + cdn.endpoint() +
           "/blob?Expires=99999999999&Signature=x\r\n"
           "Content-Length: 0\r\n\r\n";
  });
  {
    std::lock_guard<std::mutex> l(self_mu);
    self = hub.endpoint();
  }
  FetchOptions o = FastOpts(hub.endpoint());
  o.token = "tok-123";
  HttpRangeSource src(o);
  char buf[10];
  std::string served_by;
  ASSERT_TRUE(src.ReadAt(Blob100(), 0, 10, buf, &served_by).ok());
  EXPECT_EQ(std::string(buf, 10), Content100().substr(0, 10));
  EXPECT_EQ(served_by, cdn.endpoint().substr(7));
  auto hub_reqs = hub.requests();
  ASSERT_EQ(hub_reqs.size(), 2u);
  for (const std::string& r : hub_reqs) {
    EXPECT_NE(r.find("Authorization: Bearer tok-123\r\n"), std::string::npos) << r;
    EXPECT_EQ(r.find("Range:"), std::string::npos) << r;  // resolution never sends Range
  }
  for (const std::string& r : cdn.requests()) EXPECT_EQ(r.find("Authorization"), std::string::npos) << r;
}

TEST(ScriptedTest, HostileTreePageFailsTheListing) {
  ScriptedServer srv([](const std::string&) {
    std::string body =
        R"([{"type":"file","oid":"0123456789abcdef0123456789abcdef01234567","size":1,"path":"../evil"}])";
    return "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: " +
           std::to_string(body.size()) + "\r\nConnection: close\r\n\r\n" + body;
  });
  HttpHubApi api(FastOpts(srv.endpoint()));
  EXPECT_EQ(api.ListTree(Repo("org/x"), std::string(40, 'c')).status().code(), Code::kInvalidArgument);
}

TEST(ScriptedTest, SelfLinkLoopAndDuplicatePagesFail) {
  // Every page is the same one entry with a Link to a new cursor: the duplicate path is caught.
  std::atomic<int> n{0};
  ScriptedServer srv([&](const std::string&) {
    std::string body =
        R"([{"type":"file","oid":"0123456789abcdef0123456789abcdef01234567","size":1,"path":"a"}])";
    return "HTTP/1.1 200 OK\r\nLink: </api/models/org/x/tree/c?cursor=" + std::to_string(n++) +
           ">; rel=\"next\"\r\nContent-Length: " + std::to_string(body.size()) +
           "\r\nConnection: close\r\n\r\n" + body;
  });
  HttpHubApi api(FastOpts(srv.endpoint()));
  auto r = api.ListTree(Repo("org/x"), std::string(40, 'c'));
  EXPECT_EQ(r.status().code(), Code::kInvalidArgument);
  EXPECT_EQ(n.load(), 2);
}

TEST(ScriptedTest, OversizedJsonIsRefused) {
  ScriptedServer srv([](const std::string&) {
    // Claims a 100 MiB body: refused once the 64 MiB cap is crossed (we only send the head).
    return std::string("HTTP/1.1 200 OK\r\nContent-Length: 104857600\r\nConnection: close\r\n\r\n") +
           std::string(1 << 20, ' ');
  });
  HttpHubApi api(FastOpts(srv.endpoint()));
  auto r = api.ResolveRevision(Repo("org/x"), "main");
  EXPECT_EQ(r.status().code(), Code::kInvalidArgument) << r.status().ToString();
  EXPECT_EQ(api.Stats().retries, 0u);
}

}  // namespace
}  // namespace modelfs
