// MirrorSet against two real fake hubs (tests/testing/fake_hub.py) serving the same generated repo
// (gen_repo.py is deterministic: same spec, same commit and bytes): failover on 5xx and mid-file,
// cool-down and return, 429 moving the load, bad-source reports, commit and hash disagreement,
// load spreading, token rules, gated repos and PR revisions.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <thread>

#include "fetch/mirror_set.h"
#include "tests/testing/fake_hub_process.h"
#include "tests/testing/stepped_clock.h"

namespace modelfs {
namespace {

using nlohmann::json;
using testing::FakeHubOptions;
using testing::FakeHubProcess;
using testing::SteppedClock;
using Clock = std::chrono::steady_clock;

constexpr uint64_t kTotal = 8u << 20;  // 8 MiB of weights: 2 shards of ~4 MiB, quick to generate
constexpr size_t kChunk = 1u << 20;

RepoId Repo(const std::string& id = "org/tiny") {
  RepoId r;
  r.ns = id.substr(0, id.find('/'));
  r.name = id.substr(id.find('/') + 1);
  return r;
}

FakeHubOptions HubOpts(int seed = 0, std::vector<std::string> args = {}) {
  FakeHubOptions o;
  o.repos[0].total_size = kTotal;
  o.repos[0].shards = 2;
  o.repos[0].seed = seed;
  o.hub_args = std::move(args);
  return o;
}

FetchOptions Opts(std::vector<std::string> endpoints) {
  FetchOptions o;
  o.endpoints = std::move(endpoints);
  o.endpoint = o.endpoints.front();
  o.connect_timeout_ms = 2000;
  o.stall_timeout_s = 2;
  o.request_timeout_s = 30;
  o.max_retries = 3;
  o.retry_base_ms = 10;
  o.mirror_retry_after_s = 300;
  return o;
}

BlobRef BlobFor(const FakeHubProcess& hub, const std::string& commit, const std::string& path) {
  const json* f = hub.FileAt(commit, path);
  EXPECT_NE(f, nullptr) << path;
  FileEntry e;
  e.path = path;
  if (f) {
    e.size = (*f)["size"].get<uint64_t>();
    e.git_oid = (*f)["git_oid"].get<std::string>();
    if ((*f)["sha256"].is_string()) e.sha256 = (*f)["sha256"].get<std::string>();
  }
  return BlobRef::For(Repo(), commit, e);
}

std::string FirstLfs(const FakeHubProcess& hub, const std::string& commit) {
  for (const json& f : hub.manifest()["commits"][commit]["files"])
    if (f.value("lfs", false)) return f["path"].get<std::string>();
  return "";
}

// Reads [from, to) of blob in kChunk pieces; returns the bytes (empty on error, with *err set).
std::string ReadRange(RangeSource& src, const BlobRef& b, uint64_t from, uint64_t to, Status* err,
                      std::vector<std::string>* served = nullptr) {
  std::string out;
  for (uint64_t off = from; off < to; off += kChunk) {
    size_t n = static_cast<size_t>(std::min<uint64_t>(kChunk, to - off));
    std::string buf(n, '\0');
    std::string by;
    Status s = src.ReadAt(b, off, n, buf.data(), &by);
    if (!s.ok()) {
      *err = s;
      return "";
    }
    if (served) served->push_back(by);
    out += buf;
  }
  return out;
}

int CdnGets(FakeHubProcess& hub) {
  int n = 0;
  for (const json& r : hub.Log())
    if (r["listener"] == "cdn" && r["method"] == "GET") ++n;
  return n;
}

std::string Label(const FakeHubProcess& hub) { return "127.0.0.1:" + std::to_string(hub.hub_port()); }

// Two hubs shared by the suite (generating and starting them is most of a test's time); each test
// starts with no faults and empty logs. Tests that kill a hub make their own (MirrorDeathTest).
class MirrorTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    sa_ = new FakeHubProcess(HubOpts());
    sb_ = new FakeHubProcess(HubOpts());
  }
  static void TearDownTestSuite() {
    delete sa_;
    delete sb_;
    sa_ = sb_ = nullptr;
  }
  void SetUp() override {
    a_ = sa_;
    b_ = sb_;
    ASSERT_TRUE(a_->ok() && b_->ok());
    for (FakeHubProcess* h : {a_, b_}) {
      ASSERT_TRUE(h->ClearFaults());
      ASSERT_TRUE(h->ClearLog());
    }
    Init();
  }
  void Init() {
    commit_ = a_->CommitOf("main");
    ASSERT_EQ(commit_, b_->CommitOf("main"));  // same spec, same commit
    path_ = FirstLfs(*a_, commit_);
    ASSERT_FALSE(path_.empty());
    blob_ = BlobFor(*a_, commit_, path_);
    content_ = a_->Content(commit_, path_);
    ASSERT_EQ(content_.size(), blob_.size);
  }
  // 8 threads reading the blob in whole chunks at once (each from its own start); returns how
  // many reads failed or returned wrong bytes.
  int ParallelRead(MirrorSet& m) {
    std::atomic<int> bad{0};
    std::vector<std::thread> ts;
    for (int t = 0; t < 8; ++t) {
      ts.emplace_back([&, t] {
        for (uint64_t off = t * kChunk / 8; off + kChunk <= blob_.size; off += kChunk) {
          std::string buf(kChunk, '\0');
          if (!m.ReadAt(blob_, off, kChunk, buf.data(), nullptr).ok() || buf != content_.substr(off, kChunk)) bad++;
        }
      });
    }
    for (auto& t : ts) t.join();
    return bad.load();
  }
  static FakeHubProcess *sa_, *sb_;
  FakeHubProcess *a_ = nullptr, *b_ = nullptr;
  std::string commit_, path_, content_;
  BlobRef blob_;
};
FakeHubProcess* MirrorTest::sa_ = nullptr;
FakeHubProcess* MirrorTest::sb_ = nullptr;

class MirrorDeathTest : public MirrorTest {
 protected:
  void SetUp() override {
    own_a_ = std::make_unique<FakeHubProcess>(HubOpts());
    a_ = own_a_.get();
    b_ = sb_;
    ASSERT_TRUE(a_->ok() && b_->ok());
    ASSERT_TRUE(b_->ClearFaults());
    ASSERT_TRUE(b_->ClearLog());
    Init();
  }
  std::unique_ptr<FakeHubProcess> own_a_;
};

TEST_F(MirrorTest, OneEndpointIsAPassThrough) {
  MirrorSet m(Opts({a_->endpoint()}));
  ASSERT_EQ(m.size(), 1u);
  Status err;
  EXPECT_EQ(ReadRange(m, blob_, 0, blob_.size, &err), content_) << err.ToString();
  EXPECT_EQ(*m.ResolveRevision(Repo(), "main"), commit_);
  EXPECT_GT(m.Stats().mirrors[0].calls_ok, 0u);
}

// Warm (at mount): one HEAD of each endpoint's home page, with the token as every endpoint call;
// the first lookup then goes over that connection, and the endpoints' round trips rank them
// before any call: the slower one, listed first, is not the one asked first.
TEST_F(MirrorTest, WarmOpensTheConnectionTheFirstLookupUsesAndRanksTheMirrors) {
  ASSERT_TRUE(a_->SetFaults({{"where", "hub"}, {"latency_ms", 150}}));
  FetchOptions o = Opts({a_->endpoint(), b_->endpoint()});
  o.token = "tok";
  MirrorSet m(o);
  m.Warm();
  m.WaitWarm();
  MirrorSetStats st = m.Stats();
  // The 150 ms delay, within curl's timing (CI's Release stage once measured 149.949 ms).
  EXPECT_GE(st.mirrors[0].latency_ms, 140.0);
  EXPECT_GT(st.mirrors[1].latency_ms, 0.0);
  EXPECT_LT(st.mirrors[1].latency_ms, st.mirrors[0].latency_ms);
  EXPECT_EQ(st.mirrors[0].calls_ok + st.mirrors[1].calls_ok, 0u) << "a warm-up is not a call";
  EXPECT_EQ(*m.ResolveRevision(Repo(), "main"), commit_);
  for (FakeHubProcess* h : {a_, b_}) {
    json log = h->Log();
    ASSERT_GE(log.size(), 1u) << log.dump();
    EXPECT_EQ(log[0]["method"], "HEAD");
    EXPECT_EQ(log[0]["path"], "/");
    EXPECT_EQ(log[0]["status"], 200);
    EXPECT_TRUE(log[0]["auth"].get<bool>());
  }
  // The lookup went to B (faster), on the connection B's warm-up opened.
  json log_b = b_->Log();
  ASSERT_EQ(log_b.size(), 2u) << log_b.dump();
  EXPECT_NE(log_b[1]["path"].get<std::string>().find("/api/models/org/tiny"), std::string::npos) << log_b.dump();
  EXPECT_EQ(log_b[1]["client_port"], log_b[0]["client_port"]) << log_b.dump();
  EXPECT_EQ(a_->Log().size(), 1u) << a_->Log().dump();
}

// An endpoint that does not answer only delays nothing: Warm returns at once, and the dead
// mirror is not marked down by it (its first call decides).
TEST(MirrorWarmTest, AnEndpointThatDoesNotAnswerIsNotMarkedDown) {
  FetchOptions o = Opts({"http://127.0.0.1:1"});  // nothing listens on port 1
  MirrorSet m(o);
  const auto t0 = Clock::now();
  m.Warm();
  EXPECT_LT(std::chrono::duration<double>(Clock::now() - t0).count(), 0.5);
  m.WaitWarm();
  MirrorSetStats st = m.Stats();
  EXPECT_TRUE(st.mirrors[0].healthy);
  EXPECT_EQ(st.mirrors[0].latency_ms, 0.0);
}

TEST_F(MirrorTest, DuplicateEndpointsCollapse) {
  MirrorSet m(Opts({a_->endpoint(), a_->endpoint() + "/", b_->endpoint()}));
  EXPECT_EQ(m.size(), 2u);
}

TEST_F(MirrorTest, FailsOverOn5xxForApiAndReads) {
  ASSERT_TRUE(a_->SetFaults({{"where", "both"}, {"error_rate", 1.0}}));
  MirrorSet m(Opts({a_->endpoint(), b_->endpoint()}));
  EXPECT_EQ(*m.ResolveRevision(Repo(), "main"), commit_);
  Result<std::vector<FileEntry>> tree = m.ListTree(Repo(), commit_);
  ASSERT_TRUE(tree.ok()) << tree.status().ToString();
  Status err;
  std::vector<std::string> served;
  EXPECT_EQ(ReadRange(m, blob_, 0, blob_.size, &err, &served), content_) << err.ToString();
  for (const auto& s : served) EXPECT_EQ(s.rfind(Label(*b_), 0), 0u) << s;
  MirrorSetStats st = m.Stats();
  EXPECT_GE(st.failovers, 1u);
  EXPECT_FALSE(st.mirrors[0].healthy);
  EXPECT_TRUE(st.mirrors[1].healthy);
  EXPECT_EQ(CdnGets(*a_), 0);
}

TEST_F(MirrorDeathTest, MidFileFailoverWhenAMirrorDies) {
  // B is slow, so A is preferred until it dies half-way through the file.
  ASSERT_TRUE(b_->SetFaults({{"where", "both"}, {"latency_ms", 100}}));
  MirrorSet m(Opts({a_->endpoint(), b_->endpoint()}));
  Status err;
  const uint64_t half = (blob_.size / 2 / kChunk) * kChunk;
  std::vector<std::string> served;
  std::string first = ReadRange(m, blob_, 0, half, &err, &served);
  ASSERT_EQ(first, content_.substr(0, half)) << err.ToString();
  const std::string a_label = Label(*a_);
  a_->Stop();
  std::string second = ReadRange(m, blob_, half, blob_.size, &err, &served);
  ASSERT_EQ(second, content_.substr(half)) << err.ToString();
  EXPECT_EQ(served.front().rfind(a_label, 0), 0u) << served.front();
  EXPECT_EQ(served.back().rfind(Label(*b_), 0), 0u) << served.back();
  EXPECT_GE(m.Stats().failovers, 1u);
}

TEST_F(MirrorTest, FailedMirrorIsRetriedAfterCoolDown) {
  FetchOptions o = Opts({a_->endpoint(), b_->endpoint()});
  o.mirror_retry_after_s = 1;
  SteppedClock clock;
  MirrorSet m(o, clock.Fn());
  ASSERT_TRUE(a_->SetFaults({{"where", "both"}, {"error_rate", 1.0}}));
  Status err;
  ASSERT_EQ(ReadRange(m, blob_, 0, kChunk, &err), content_.substr(0, kChunk)) << err.ToString();
  ASSERT_TRUE(a_->ClearFaults());
  ASSERT_TRUE(a_->ClearLog());
  // Still cooling down: A is not asked.
  ASSERT_EQ(ReadRange(m, blob_, 0, 4 * kChunk, &err), content_.substr(0, 4 * kChunk)) << err.ToString();
  EXPECT_EQ(a_->Log().size(), 0u);
  clock.Advance(std::chrono::milliseconds(1300));
  ASSERT_EQ(ReadRange(m, blob_, 0, blob_.size, &err), content_) << err.ToString();
  EXPECT_GT(a_->Log().size(), 0u);  // back in use
  EXPECT_TRUE(m.Stats().mirrors[0].healthy);
}

TEST_F(MirrorTest, RateLimitMovesLoadWithoutWaiting) {
  ASSERT_TRUE(a_->SetFaults(
      {{"where", "both"}, {"status_override", {{"code", 429}, {"retry_after", 30}, {"count", 1000}}}}));
  MirrorSet m(Opts({a_->endpoint(), b_->endpoint()}));
  auto t0 = Clock::now();
  EXPECT_EQ(*m.ResolveRevision(Repo(), "main"), commit_);
  Status err;
  EXPECT_EQ(ReadRange(m, blob_, 0, blob_.size, &err), content_) << err.ToString();
  // A asked for 30 s; nobody waited for it (the per-attempt backoff cap alone is 10 s).
  EXPECT_LT(std::chrono::duration<double>(Clock::now() - t0).count(), 5.0);
  MirrorSetStats st = m.Stats();
  EXPECT_GE(st.rate_limited, 1u);
  EXPECT_FALSE(st.mirrors[0].healthy);
  // A was asked once (or twice: its own quick retry), then left alone for the told 30 s.
  int a_requests = 0;
  for (const json& r : a_->Log()) a_requests += r["status"] == 429;
  EXPECT_LE(a_requests, 2);
}

TEST_F(MirrorTest, BadSourceReportRefetchesFromTheOtherMirror) {
  ASSERT_TRUE(a_->SetFaults({{"where", "cdn"}, {"corrupt_paths", {path_}}}));
  ASSERT_TRUE(b_->SetFaults({{"where", "both"}, {"latency_ms", 50}}));  // A is preferred
  MirrorSet m(Opts({a_->endpoint(), b_->endpoint()}));
  Status err;
  std::vector<std::string> served;
  std::string got = ReadRange(m, blob_, 0, blob_.size, &err, &served);
  ASSERT_EQ(got.size(), content_.size()) << err.ToString();
  ASSERT_NE(got, content_);  // A flipped bytes (the cache's hash check would catch this)
  ASSERT_EQ(served[0].rfind(Label(*a_), 0), 0u);
  m.ReportBadSource(blob_, served[0]);
  served.clear();
  EXPECT_EQ(ReadRange(m, blob_, 0, blob_.size, &err, &served), content_) << err.ToString();
  for (const auto& s : served) EXPECT_EQ(s.rfind(Label(*b_), 0), 0u) << s;
  MirrorSetStats st = m.Stats();
  EXPECT_EQ(st.bad_source_reports, 1u);
  EXPECT_EQ(st.mirrors[0].bad_files, 1u);
  // Other files still come from A.
  BlobRef other = BlobFor(*a_, commit_, "config.json");
  std::string by;
  std::string buf(other.size, '\0');
  ASSERT_TRUE(m.ReadAt(other, 0, other.size, buf.data(), &by).ok());
  EXPECT_EQ(by.rfind(Label(*a_), 0), 0u) << by;
}

TEST_F(MirrorTest, AllMirrorsBadForAFileAreStillTried) {
  MirrorSet m(Opts({a_->endpoint(), b_->endpoint()}));
  m.ReportBadSource(blob_, Label(*a_));
  m.ReportBadSource(blob_, Label(*b_) + " via 127.0.0.1:1");
  Status err;
  EXPECT_EQ(ReadRange(m, blob_, 0, kChunk, &err), content_.substr(0, kChunk)) << err.ToString();
}

TEST_F(MirrorTest, HashDisagreementIsNeverServed) {
  BlobRef wrong = blob_;
  wrong.hash = std::string(64, 'a');  // the listing we pinned says another content
  MirrorSet m(Opts({a_->endpoint(), b_->endpoint()}));
  std::string buf(kChunk, '\0');
  Status s = m.ReadAt(wrong, 0, kChunk, buf.data(), nullptr);
  EXPECT_EQ(s.code(), Code::kInvalidArgument) << s.ToString();
  EXPECT_NE(s.message().find("differs"), std::string::npos) << s.ToString();
  EXPECT_EQ(CdnGets(*a_) + CdnGets(*b_), 0);  // refused before any byte moved
  EXPECT_EQ(m.Stats().mirrors[0].bad_files, 1u);
}

TEST_F(MirrorTest, SpreadsParallelReadsOverHealthyMirrors) {
  MirrorSet m(Opts({a_->endpoint(), b_->endpoint()}));
  EXPECT_EQ(ParallelRead(m), 0);
  EXPECT_GT(CdnGets(*a_), 0);
  EXPECT_GT(CdnGets(*b_), 0);
}

// EndpointPolicy::kOrdered (a site cache first, mirrors behind it): parallel reads never spread;
// the second mirror takes reads only while the first is down, and the first gets them back after
// its cool-down.
TEST_F(MirrorTest, OrderedPolicyKeepsReadsOnTheFirstHealthyMirror) {
  FetchOptions o = Opts({a_->endpoint(), b_->endpoint()});
  o.endpoint_policy = FetchOptions::EndpointPolicy::kOrdered;
  o.mirror_retry_after_s = 1;
  SteppedClock clock;
  MirrorSet m(o, clock.Fn());
  auto parallel_read = [&] { return ParallelRead(m); };
  EXPECT_EQ(parallel_read(), 0);
  EXPECT_GT(CdnGets(*a_), 0);
  EXPECT_EQ(CdnGets(*b_), 0);
  // A fails: B carries the reads.
  ASSERT_TRUE(a_->SetFaults({{"where", "both"}, {"error_rate", 1.0}}));
  EXPECT_EQ(parallel_read(), 0);
  EXPECT_GT(CdnGets(*b_), 0);
  // A recovers; after the cool-down every read is A's again.
  ASSERT_TRUE(a_->ClearFaults());
  clock.Advance(std::chrono::milliseconds(1300));
  ASSERT_TRUE(a_->ClearLog());
  ASSERT_TRUE(b_->ClearLog());
  EXPECT_EQ(parallel_read(), 0);
  EXPECT_GT(CdnGets(*a_), 0);
  EXPECT_EQ(CdnGets(*b_), 0);
}

// Transfers(): a read in flight is listed with its file, mirror and requested bytes while it
// runs; afterwards the file's completed bytes, speed and mirror stay visible for the linger time.
// The list is looked at from the read's own progress callback, which runs while the read is in
// flight by construction: no polling, no race with the read's end. (The registry's rules alone,
// linger, bound and order, are tests/fetch/transfer_registry_test.cc.)
TEST_F(MirrorTest, TransfersShowReadsInFlightAndFinishedBytes) {
  // ~1 MiB/s on A's CDN: the speed measured after the read must say so.
  ASSERT_TRUE(a_->SetFaults({{"where", "cdn"}, {"rate_bytes_per_s", 1 << 20}}));
  MirrorSet m(Opts({a_->endpoint()}));
  EXPECT_TRUE(m.Transfers().empty());
  std::string buf(kChunk, '\0');
  int progress_calls = 0;
  std::vector<TransferInfo> during;
  Status read_status = m.ReadAtStreaming(blob_, 0, kChunk, buf.data(), nullptr, [&](size_t) {
    if (progress_calls++ == 0) during = m.Transfers();
  });
  ASSERT_TRUE(read_status.ok()) << read_status.ToString();
  ASSERT_GT(progress_calls, 0);
  ASSERT_EQ(during.size(), 1u);
  EXPECT_NE(during[0].file.find(path_), std::string::npos) << during[0].file;
  EXPECT_EQ(during[0].reads_in_flight, 1u);
  EXPECT_EQ(during[0].mirror, Label(*a_));
  EXPECT_EQ(during[0].bytes_in_flight, kChunk);
  EXPECT_EQ(during[0].bytes_done, 0u);
  std::vector<TransferInfo> after = m.Transfers();
  ASSERT_EQ(after.size(), 1u);
  EXPECT_EQ(after[0].reads_in_flight, 0u);
  EXPECT_EQ(after[0].bytes_in_flight, 0u);
  EXPECT_EQ(after[0].bytes_done, kChunk);
  EXPECT_EQ(after[0].mirror, Label(*a_));
  // Throttled to ~1 MiB/s: the measured speed must say so (generous bounds for a busy machine).
  EXPECT_GT(after[0].speed_Bps, 100e3);
  EXPECT_LT(after[0].speed_Bps, 4.0 * (1 << 20));
}

// Proxies come from libcurl's standard variables: with http_proxy pointing at hub B (which, like any
// origin server, answers an absolute-form request line), an endpoint whose name does not even
// resolve is reached through it.
TEST_F(MirrorTest, HttpProxyFromTheEnvironmentIsUsed) {
  const char* saved[] = {"no_proxy", "NO_PROXY", "http_proxy"};
  std::vector<std::string> old;
  for (const char* v : saved) old.push_back(getenv(v) ? getenv(v) : std::string("\x01"));
  unsetenv("no_proxy");
  unsetenv("NO_PROXY");
  setenv("http_proxy", ("http://127.0.0.1:" + std::to_string(b_->hub_port())).c_str(), 1);
  MirrorSet m(Opts({"http://modelfs-proxy-test.invalid"}));
  Result<std::string> r = m.ResolveRevision(Repo(), "main");
  for (size_t i = 0; i < 3; ++i) {
    if (old[i] == "\x01") {
      unsetenv(saved[i]);
    } else {
      setenv(saved[i], old[i].c_str(), 1);
    }
  }
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(*r, commit_);
  EXPECT_GT(b_->Log().size(), 0u);
  EXPECT_EQ(a_->Log().size(), 0u);
}

TEST(MirrorCommitTest, MirrorWithoutTheCommitIsNeverMixedIn) {
  FakeHubProcess a(HubOpts(1)), b(HubOpts(2));  // different seeds: different commits and bytes
  ASSERT_TRUE(a.ok() && b.ok());
  const std::string commit = a.CommitOf("main");
  ASSERT_NE(commit, b.CommitOf("main"));
  BlobRef blob = BlobFor(a, commit, FirstLfs(a, commit));
  ASSERT_TRUE(a.SetFaults({{"where", "both"}, {"error_rate", 1.0}}));
  MirrorSet m(Opts({a.endpoint(), b.endpoint()}));
  std::string buf(kChunk, '\0');
  Status s = m.ReadAt(blob, 0, kChunk, buf.data(), nullptr);
  EXPECT_FALSE(s.ok());
  EXPECT_EQ(CdnGets(b), 0);  // B said 404 for the commit and sent no bytes
  // The failed read returned after marking A down (Run records each outcome before it moves
  // on): A's cool-down is in effect now, with nothing to wait for.
  MirrorSetStats st = m.Stats();
  ASSERT_EQ(st.mirrors.size(), 2u);
  EXPECT_FALSE(st.mirrors[0].healthy);
  ASSERT_TRUE(a.ClearFaults());  // answered once the hub applied it
  std::string by;
  // A is in its cool-down and B lacks the commit: the set still tries A rather than fail.
  s = m.ReadAt(blob, 0, kChunk, buf.data(), &by);
  ASSERT_TRUE(s.ok()) << s.ToString();
  EXPECT_EQ(buf, a.Content(commit, blob.path).substr(0, kChunk));
}

TEST(MirrorHubTest, TokenGoesToEveryEndpointButNeverToACdn) {
  FakeHubProcess a(HubOpts(0, {"--token", "tok"})), b(HubOpts(0, {"--token", "tok"}));
  ASSERT_TRUE(a.ok() && b.ok());
  FetchOptions o = Opts({a.endpoint(), b.endpoint()});
  o.token = "tok";
  MirrorSet m(o);
  const std::string commit = a.CommitOf("main");
  BlobRef blob = BlobFor(a, commit, FirstLfs(a, commit));
  std::vector<std::thread> ts;
  for (int t = 0; t < 4; ++t)
    ts.emplace_back([&, t] {
      std::string buf(kChunk, '\0');
      for (uint64_t off = t * kChunk; off + kChunk <= blob.size; off += 4 * kChunk)
        EXPECT_TRUE(m.ReadAt(blob, off, kChunk, buf.data(), nullptr).ok());
    });
  for (auto& t : ts) t.join();
  int hub_requests = 0;
  for (FakeHubProcess* h : {&a, &b}) {
    for (const json& r : h->Log()) {
      if (r["listener"] == "hub") {
        EXPECT_TRUE(r["auth"].get<bool>()) << r.dump();
        ++hub_requests;
      } else {
        EXPECT_FALSE(r["auth"].get<bool>()) << r.dump();
      }
    }
    EXPECT_EQ(h->Stats()["auth_to_cdn"], 0);
  }
  EXPECT_GT(hub_requests, 0);
}

TEST(MirrorHubTest, GatedRepoIsPermissionDeniedAndPrRevisionsResolve) {
  FakeHubOptions o = HubOpts();
  o.repos.push_back(o.repos[0]);
  o.repos[1].repo = "org/gated";
  o.repos[1].gated = true;
  FakeHubProcess a(o), b(o);
  ASSERT_TRUE(a.ok() && b.ok());
  MirrorSet m(Opts({a.endpoint(), b.endpoint()}));
  // Gated: metadata is public, downloads need a token with access.
  Result<std::string> g = m.ResolveRevision(Repo("org/gated"), "main");
  ASSERT_TRUE(g.ok()) << g.status().ToString();
  FileEntry e;
  e.path = "config.json";
  const json* f = a.FileAt(*g, e.path, "org/gated");
  ASSERT_NE(f, nullptr);
  e.size = (*f)["size"].get<uint64_t>();
  e.git_oid = (*f)["git_oid"].get<std::string>();
  BlobRef gb = BlobRef::For(Repo("org/gated"), *g, e);
  std::string buf(e.size, '\0');
  Status s = m.ReadAt(gb, 0, e.size, buf.data(), nullptr);
  EXPECT_EQ(s.code(), Code::kPermissionDenied) << s.ToString();
  EXPECT_NE(s.message().find("token"), std::string::npos) << s.ToString();
  Result<std::string> pr = m.ResolveRevision(Repo(), "refs/pr/1");
  ASSERT_TRUE(pr.ok()) << pr.status().ToString();
  EXPECT_EQ(*pr, a.CommitOf("refs/pr/1"));
  Result<std::string> missing = m.ResolveRevision(Repo("org/nope"), "main");
  EXPECT_EQ(missing.status().code(), Code::kNotFound) << missing.status().ToString();
}

}  // namespace
}  // namespace modelfs
