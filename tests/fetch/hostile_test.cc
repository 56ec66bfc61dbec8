// The fetch layer against the fake hub in hostile mode (tests/testing/fake_hub.py "hostile"): each
// misbehaviour of the list yields an error (never a crash, never wrong bytes reported as
// good, never a wait past the configured timeouts), or, for the legal-but-odd ones (a 200 with the
// whole file to a Range request), exactly the right bytes.
#include <gtest/gtest.h>

#include <chrono>
#include <sys/stat.h>

#include "fetch/http_hub_api.h"
#include "fetch/http_range_source.h"
#include "fetch/mirror_set.h"
#include "tests/testing/fake_hub_process.h"

namespace modelfs {
namespace {

using nlohmann::json;
using testing::FakeHubOptions;
using testing::FakeHubProcess;
using Clock = std::chrono::steady_clock;

RepoId Repo() {
  RepoId r;
  r.ns = "org";
  r.name = "tiny";
  return r;
}

FetchOptions Opts(const std::string& ep) {
  FetchOptions o;
  o.endpoint = ep;
  o.connect_timeout_ms = 2000;
  o.stall_timeout_s = 2;
  o.request_timeout_s = 20;
  o.max_retries = 1;
  o.retry_base_ms = 10;
  return o;
}

double Since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

class HostileTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    FakeHubOptions o;
    o.repos[0].total_size = 4 << 20;
    o.repos[0].shards = 1;
    hub_ = new FakeHubProcess(o);
  }
  static void TearDownTestSuite() {
    delete hub_;
    hub_ = nullptr;
  }
  void SetUp() override {
    ASSERT_TRUE(hub_->ok());
    ASSERT_TRUE(hub_->SetConfig({{"hostile", ""}}));
    commit_ = hub_->CommitOf("main");
    for (const json& f : hub_->manifest()["commits"][commit_]["files"]) {
      if (!f.value("lfs", false)) continue;
      FileEntry e;
      e.path = f["path"].get<std::string>();
      e.size = f["size"].get<uint64_t>();
      e.git_oid = f["git_oid"].get<std::string>();
      e.sha256 = f["sha256"].get<std::string>();
      blob_ = BlobRef::For(Repo(), commit_, e);
      break;
    }
    ASSERT_GT(blob_.size, 8192u);
    content_ = hub_->Content(commit_, blob_.path);
  }
  void TearDown() override { hub_->SetConfig({{"hostile", ""}}); }
  // Reads [0, 4096) with a fresh source; returns its status and, if OK, checks the bytes.
  Status Read(double* seconds = nullptr, FetchOptions o = {}) {
    if (o.endpoint.empty() || o.endpoint == FetchOptions{}.endpoint) o = Opts(hub_->endpoint());
    HttpRangeSource src(o);
    std::string buf(4096, '\0');
    auto t0 = Clock::now();
    Status s = src.ReadAt(blob_, 0, buf.size(), buf.data(), nullptr);
    if (seconds) *seconds = Since(t0);
    if (s.ok()) {
      EXPECT_EQ(buf, content_.substr(0, buf.size()));
    }
    return s;
  }
  static FakeHubProcess* hub_;
  std::string commit_, content_;
  BlobRef blob_;
};
FakeHubProcess* HostileTest::hub_ = nullptr;

TEST_F(HostileTest, HostileListingsAreRefused) {
  for (const char* c : {"tree_dotdot", "tree_absolute", "tree_empty_name", "tree_empty_segment", "tree_duplicate",
                        "tree_nul", "tree_slash", "tree_file_and_dir", "tree_negative_size", "tree_huge_size",
                        "tree_float_size"}) {
    ASSERT_TRUE(hub_->SetConfig({{"hostile", c}}));
    HttpHubApi api(Opts(hub_->endpoint()));
    Result<std::vector<FileEntry>> t = api.ListTree(Repo(), commit_);
    EXPECT_EQ(t.status().code(), Code::kInvalidArgument) << c << ": " << t.status().ToString();
  }
  struct stat st;
  EXPECT_NE(stat("/tmp/modelfs-hostile-escape", &st), 0);
}

TEST_F(HostileTest, HugeAndDeepJsonAreRefusedInBoundedTime) {
  for (const char* c : {"json_deep", "json_huge"}) {
    ASSERT_TRUE(hub_->SetConfig({{"hostile", c}}));
    HttpHubApi api(Opts(hub_->endpoint()));
    auto t0 = Clock::now();
    Result<std::string> r = api.ResolveRevision(Repo(), "main");
    EXPECT_EQ(r.status().code(), Code::kInvalidArgument) << c << ": " << r.status().ToString();
    Result<std::vector<FileEntry>> t = api.ListTree(Repo(), commit_);
    EXPECT_EQ(t.status().code(), Code::kInvalidArgument) << c << ": " << t.status().ToString();
    EXPECT_LT(Since(t0), 20.0) << c;
  }
}

TEST_F(HostileTest, RedirectsToOtherSchemesOrLoopsAreRefused) {
  for (const char* c : {"redirect_file", "redirect_scheme", "redirect_loop"}) {
    ASSERT_TRUE(hub_->SetConfig({{"hostile", c}}));
    double secs = 0;
    Status s = Read(&secs);
    EXPECT_EQ(s.code(), Code::kInvalidArgument) << c << ": " << s.ToString();
    EXPECT_LT(secs, 5.0) << c;
  }
}

TEST_F(HostileTest, WrongRangesAndLengthsAreNeverServed) {
  const std::pair<const char*, const char*> cases[] = {{"wrong_content_range", "does not match"},
                                                       {"size_mismatch", "does not match"},
                                                       {"body_long", "more bytes than asked"},
                                                       {"body_short", "after"}};
  for (const auto& [c, why] : cases) {
    ASSERT_TRUE(hub_->SetConfig({{"hostile", c}}));
    double secs = 0;
    Status s = Read(&secs);
    EXPECT_FALSE(s.ok()) << c;
    EXPECT_NE(s.message().find(why), std::string::npos) << c << ": " << s.ToString();
    EXPECT_LT(secs, 10.0) << c;
  }
}

TEST_F(HostileTest, WholeFileAnswerToARangeGivesTheRightBytes) {
  ASSERT_TRUE(hub_->SetConfig({{"hostile", "full_200"}}));
  EXPECT_TRUE(Read().ok());
  // A window in the middle too.
  HttpRangeSource src(Opts(hub_->endpoint()));
  std::string buf(1000, '\0');
  ASSERT_TRUE(src.ReadAt(blob_, 5000, buf.size(), buf.data(), nullptr).ok());
  EXPECT_EQ(buf, content_.substr(5000, 1000));
}

TEST_F(HostileTest, SilentAndTricklingServersEndWithinTheStallTimeout) {
  // stall 2 s, one retry: each attempt is cut after ~2 s of < 1 KiB/s.
  for (const char* c : {"never_answer", "trickle"}) {
    ASSERT_TRUE(hub_->SetConfig({{"hostile", c}}));
    double secs = 0;
    Status s = Read(&secs);
    EXPECT_EQ(s.code(), Code::kUnavailable) << c << ": " << s.ToString();
    EXPECT_TRUE(s.message().find("stalled") != std::string::npos ||
                s.message().find("imeout") != std::string::npos || s.message().find("timed out") != std::string::npos)
        << c << ": " << s.ToString();
    EXPECT_LT(secs, 12.0) << c;
  }
}

TEST_F(HostileTest, MirrorSetMovesOffAHostileMirror) {
  // One hostile mirror and one good one serving the same repo: reads come out right.
  FakeHubOptions o;
  o.repos[0].total_size = 4 << 20;
  o.repos[0].shards = 1;
  FakeHubProcess good(o);
  ASSERT_TRUE(good.ok());
  for (const char* c : {"wrong_content_range", "redirect_file", "trickle", "body_short"}) {
    ASSERT_TRUE(hub_->SetConfig({{"hostile", c}}));
    FetchOptions f = Opts(hub_->endpoint());
    f.endpoints = {hub_->endpoint(), good.endpoint()};
    MirrorSet m(f);
    std::string buf(4096, '\0');
    auto t0 = Clock::now();
    Status s = m.ReadAt(blob_, 0, buf.size(), buf.data(), nullptr);
    ASSERT_TRUE(s.ok()) << c << ": " << s.ToString();
    EXPECT_EQ(buf, content_.substr(0, buf.size())) << c;
    EXPECT_LT(Since(t0), 12.0) << c;
  }
}

}  // namespace
}  // namespace modelfs

namespace modelfs {
namespace {

// 10,000+ files over many pages (fake_hub.py "synthetic_files"), through one endpoint and through
// a MirrorSet: every entry arrives once, with its parent directories.
TEST_F(HostileTest, PaginatedTreeOfTwelveThousandFiles) {
  constexpr int kFiles = 12345;
  ASSERT_TRUE(hub_->SetConfig({{"synthetic_files", kFiles}, {"page_size", 1000}}));
  ASSERT_TRUE(hub_->ClearLog());
  for (int via_mirrors = 0; via_mirrors < 2; ++via_mirrors) {
    FetchOptions o = Opts(hub_->endpoint());
    Result<std::vector<FileEntry>> t = Status::Unavailable("unset");
    if (via_mirrors) {
      o.endpoints = {hub_->endpoint(), "http://127.0.0.1:1"};
      MirrorSet m(o);
      t = m.ListTree(Repo(), commit_);
    } else {
      HttpHubApi api(o);
      t = api.ListTree(Repo(), commit_);
    }
    ASSERT_TRUE(t.ok()) << t.status().ToString();
    int files = 0, dirs = 0;
    for (const FileEntry& e : *t) (e.is_dir ? dirs : files)++;
    EXPECT_EQ(files, kFiles);
    EXPECT_EQ(dirs, (kFiles + 999) / 1000);
  }
  int pages = 0;
  for (const json& r : hub_->Log()) pages += r["path"].get<std::string>().find("/tree/") != std::string::npos;
  EXPECT_GE(pages, 2 * 13);
  ASSERT_TRUE(hub_->SetConfig({{"synthetic_files", 0}, {"page_size", 1000}}));
}

}  // namespace
}  // namespace modelfs
