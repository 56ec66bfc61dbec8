#include "fetch/protocol.h"

#include <gtest/gtest.h>

#include <string>

namespace modelfs::protocol {
namespace {

const std::string kOid40 = "0123456789abcdef0123456789abcdef01234567";
const std::string kSha64 = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

std::string FileJson(const std::string& path, const std::string& size = "10",
                     const std::string& oid = kOid40) {
  return R"({"type":"file","oid":")" + oid + R"(","size":)" + size + R"(,"path":")" + path + R"("})";
}

// ---- quoting

TEST(QuoteTest, RevisionEncodesSlash) {
  EXPECT_EQ(QuoteRevision("refs/pr/1"), "refs%2Fpr%2F1");
  EXPECT_EQ(QuoteRevision("refs/convert/parquet"), "refs%2Fconvert%2Fparquet");
  EXPECT_EQ(QuoteRevision("main"), "main");
  EXPECT_EQ(QuoteRevision("v1.0-rc_2~x"), "v1.0-rc_2~x");
  EXPECT_EQ(QuoteRevision("a b#?%&+="), "a%20b%23%3F%25%26%2B%3D");
  EXPECT_EQ(QuoteRevision(""), "");
}

TEST(QuoteTest, PathKeepsSlash) {
  EXPECT_EQ(QuotePath("a/b c/d#e.bin"), "a/b%20c/d%23e.bin");
  EXPECT_EQ(QuotePath("dir/file?.txt"), "dir/file%3F.txt");
  EXPECT_EQ(QuotePath("caf\xc3\xa9.txt"), "caf%C3%A9.txt");
  EXPECT_EQ(QuotePath(std::string("a\0b", 3)), "a%00b");
}

// ---- Content-Range

TEST(ContentRangeTest, Valid) {
  auto r = ParseContentRange("bytes 0-99/548105171");
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->first, 0u);
  EXPECT_EQ(r->last, 99u);
  EXPECT_EQ(r->total, 548105171u);
  EXPECT_TRUE(ParseContentRange("  bytes 5-5/6 \r\n").ok());
  EXPECT_TRUE(ParseContentRange("Bytes 0-0/1").ok());
  auto big = ParseContentRange("bytes 0-18446744073709551614/18446744073709551615");
  ASSERT_TRUE(big.ok());
  EXPECT_EQ(big->total, 18446744073709551615ull);
}

TEST(ContentRangeTest, RejectsMalformed) {
  for (const char* bad : {"",
                          "bytes",
                          "bytes ",
                          "bytes */100",
                          "bytes 0-99/*",
                          "bytes 0-99",
                          "bytes -1-99/100",
                          "bytes 0--1/100",
                          "bytes 0-99/-100",
                          "bytes 10-5/100",
                          "bytes 0-100/100",
                          "bytes 0-99/100x",
                          "bytes 0 -99/100",
                          "bytes 0- 99/100",
                          "bytes 0-99 /100",
                          "bytes +0-99/100",
                          "items 0-99/100",
                          "bytes=0-99/100",
                          "bytes 0-99/100/5",
                          "bytes 0x0-0x1/100",
                          "bytes 1.5-2/100",
                          "bytes 0-99/18446744073709551616",
                          "bytes 18446744073709551616-1/2",
                          "bytes 0-99/100, bytes 0-1/100",
                          "bytes 0-99/0",
                          "bytes 00000000000000000000001-2/3"}) {
    EXPECT_FALSE(ParseContentRange(bad).ok()) << bad;
  }
}

// ---- Link

TEST(LinkTest, Next) {
  EXPECT_EQ(ParseLinkNext(R"(<https://hf.co/api/x?cursor=ab%3D%3D&limit=2>; rel="next")"),
            "https://hf.co/api/x?cursor=ab%3D%3D&limit=2");
  EXPECT_EQ(ParseLinkNext(R"(<https://a/1>; rel="prev", <https://a/2>; rel="next")"), "https://a/2");
  EXPECT_EQ(ParseLinkNext(R"(<https://a/2>;rel=next)"), "https://a/2");
  EXPECT_EQ(ParseLinkNext(R"(<https://a/2>; title="x, y"; REL="last next")"), "https://a/2");
  EXPECT_EQ(ParseLinkNext(R"(<https://a/t>; rel="xet-auth", <https://c/r>; rel="xet-reconstruction-info")"),
            std::nullopt);
  EXPECT_EQ(ParseLinkNext(""), std::nullopt);
  EXPECT_EQ(ParseLinkNext("<https://a/2"), std::nullopt);
  EXPECT_EQ(ParseLinkNext(R"(<>; rel="next")"), std::nullopt);
  EXPECT_EQ(ParseLinkNext(R"(<https://a/2>; rel="nextish")"), std::nullopt);
}

TEST(RetryDelayTest, RetryAfterAndRateLimit) {
  EXPECT_EQ(ParseRetryDelayMs("3", "", 10000), 3000);
  EXPECT_EQ(ParseRetryDelayMs("", R"("api";r=0;t=2)", 10000), 2000);
  EXPECT_EQ(ParseRetryDelayMs("", R"("resolvers";r=2989;t=109)", 10000), std::nullopt);  // quota left
  EXPECT_EQ(ParseRetryDelayMs("99999999999999999999999", "", 10000), std::nullopt);
  EXPECT_EQ(ParseRetryDelayMs("600", "", 10000), 10000);
  EXPECT_EQ(ParseRetryDelayMs("Wed, 21 Oct 2015 07:28:00 GMT", "", 10000), std::nullopt);
  EXPECT_EQ(ParseRetryDelayMs("-5", "", 10000), std::nullopt);
  EXPECT_EQ(ParseRetryDelayMs("", "", 10000), std::nullopt);
}

// ---- paths

TEST(PathTest, Validation) {
  for (const char* good : {"a", "a/b/c.safetensors", ".gitattributes", "a/.hidden", "...", "a..b", "x y/z"})
    EXPECT_TRUE(ValidateRepoPath(good).ok()) << good;
  for (const char* bad : {"", "/abs", "../x", "a/../x", "a/..", "./a", "a/./b", "a//b", "a/", "..", ".",
                          "a\\b", "\\\\server\\share"})
    EXPECT_FALSE(ValidateRepoPath(bad).ok()) << bad;
  EXPECT_FALSE(ValidateRepoPath(std::string("a\0b", 3)).ok());
  EXPECT_FALSE(ValidateRepoPath(std::string(5000, 'a')).ok());
  EXPECT_FALSE(ValidateRepoPath(std::string(256, 'a')).ok());
  EXPECT_TRUE(ValidateRepoPath(std::string(255, 'a')).ok());
}

TEST(HexTest, IsHex) {
  EXPECT_TRUE(IsHex(kOid40, 40));
  EXPECT_TRUE(IsHex("ABCDEF0123", 10));
  EXPECT_FALSE(IsHex("ABCDEF0123", 10, true));
  EXPECT_FALSE(IsHex(kOid40, 41));
  EXPECT_FALSE(IsHex("g123", 4));
}

// ---- revision JSON

TEST(RevisionTest, Sha) {
  auto r = ParseRevisionSha(R"({"id":"org/x","sha":")" + kOid40 + R"(","siblings":[]})");
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(*r, kOid40);
  for (const std::string& bad :
       {std::string("{}"), std::string(R"({"sha":12})"), std::string(R"({"sha":"abc"})"),
        R"({"sha":")" + std::string(40, 'A') + R"("})", R"({"sha":")" + kOid40 + R"(0"})",
        std::string("[1,2]"), std::string("not json"), std::string(""), std::string(R"({"sha":)"),
        std::string(R"({"sha":"\u0000"})")}) {
    EXPECT_FALSE(ParseRevisionSha(bad).ok()) << bad;
    EXPECT_EQ(ParseRevisionSha(bad).status().code(), Code::kInvalidArgument);
  }
}

TEST(RevisionTest, SiblingsWithBlobsAreTheCommitsFiles) {
  const std::string sha256(64, 'b');
  auto r = ParseRevision(R"({"sha":")" + kOid40 + R"(","siblings":[)" +
                         R"({"rfilename":"config.json","blobId":")" + kOid40 + R"(","size":665},)" +
                         R"({"rfilename":"sub/model.safetensors","blobId":")" + kOid40 +
                         R"(","size":134,"lfs":{"sha256":")" + sha256 + R"(","size":548105171,"pointerSize":134}}]})");
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->sha, kOid40);
  ASSERT_TRUE(r->files.has_value());
  ASSERT_EQ(r->files->size(), 2u);
  const FileEntry& small = (*r->files)[0];
  EXPECT_EQ(small.path, "config.json");
  EXPECT_EQ(small.size, 665u);
  EXPECT_EQ(small.git_oid, kOid40);
  EXPECT_TRUE(small.sha256.empty());
  const FileEntry& lfs = (*r->files)[1];
  EXPECT_EQ(lfs.path, "sub/model.safetensors");
  EXPECT_EQ(lfs.size, 548105171u);  // the blob's size, not the pointer's
  EXPECT_EQ(lfs.sha256, sha256);
}

TEST(RevisionTest, SiblingsThatCannotStandInForTheTreeLeaveItToTheTree) {
  const std::string head = R"({"sha":")" + kOid40 + R"(","siblings":)";
  const std::string oid = R"(","blobId":")" + kOid40 + R"(","size":1})";
  for (const std::string& sib : {
           std::string(""),                                          // no siblings at all
           std::string("[]"),                                        // empty (or truncated)
           std::string(R"([{"rfilename":"a.json"}])"),               // a server that ignored blobs=true
           R"([{"rfilename":"../etc/passwd)" + oid + "]",            // a path out of the repo
           R"([{"rfilename":"a.json)" + oid + R"(,{"rfilename":"b","blobId":"x","size":1}])",
           R"([{"rfilename":"a)" + oid + R"(,{"rfilename":"b","blobId":")" + kOid40 +
               R"(","size":1,"lfs":{"sha256":"short","size":1}}])",
           std::string(R"({"rfilename":"a"})")}) {                  // not a list
    const std::string body = sib.empty() ? R"({"sha":")" + kOid40 + R"("})" : head + sib + "}";
    auto r = ParseRevision(body);
    ASSERT_TRUE(r.ok()) << body << ": " << r.status().ToString();
    EXPECT_EQ(r->sha, kOid40);
    EXPECT_FALSE(r->files.has_value()) << body;
  }
  // As many siblings as the hub truncates at: the list may be cut short.
  std::string many = head + "[";
  for (size_t i = 0; i < kMaxRevisionSiblings; i++)
    many += (i ? R"(,{"rfilename":"f)" : R"({"rfilename":"f)") + std::to_string(i) + oid;
  many += "]}";
  auto r = ParseRevision(many);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_FALSE(r->files.has_value());
}

TEST(JsonShapeTest, DepthAndSize) {
  std::string deep(100000, '[');
  EXPECT_EQ(ParseRevisionSha(deep).status().code(), Code::kInvalidArgument);
  EXPECT_EQ(ParseTreePage(deep + std::string(100000, ']')).status().code(), Code::kInvalidArgument);
  std::string ok_depth = std::string(10, '[') + std::string(10, ']');
  EXPECT_TRUE(CheckJsonShape(ok_depth).ok());
  // Brackets inside strings do not count.
  EXPECT_TRUE(CheckJsonShape("[\"" + std::string(1000, '[') + "\\\"\"]").ok());
  std::string huge(kMaxJsonBodyBytes + 1, ' ');
  EXPECT_FALSE(CheckJsonShape(huge).ok());
}

// ---- tree pages

TEST(TreePageTest, ParsesFilesDirsAndLfs) {
  std::string body = "[" + FileJson("config.json", "665") + R"(,{"type":"directory","oid":")" + kOid40 +
                     R"(","size":0,"path":"onnx"},)" + R"({"type":"file","oid":")" + kOid40 +
                     R"(","size":134,"path":"model.safetensors","lfs":{"oid":")" + kSha64 +
                     R"(","size":548105171,"pointerSize":134},"xetHash":")" + std::string(64, '*') + R"("}])";
  auto r = ParseTreePage(body);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  ASSERT_EQ(r->size(), 3u);
  EXPECT_EQ((*r)[0].path, "config.json");
  EXPECT_EQ((*r)[0].size, 665u);
  EXPECT_FALSE((*r)[0].is_dir);
  EXPECT_EQ((*r)[0].hash_kind(), HashKind::kGitSha1);
  EXPECT_TRUE((*r)[1].is_dir);
  EXPECT_EQ((*r)[2].size, 548105171u);  // lfs.size wins over the pointer size
  EXPECT_EQ((*r)[2].sha256, kSha64);
  EXPECT_EQ((*r)[2].ContentKey(), "sha256-" + kSha64);
}

TEST(TreePageTest, UppercaseHexIsNormalised) {
  std::string upper40 = "0123456789ABCDEF0123456789ABCDEF01234567";
  auto r = ParseTreePage("[" + FileJson("a", "1", upper40) + "]");
  ASSERT_TRUE(r.ok());
  EXPECT_EQ((*r)[0].git_oid, kOid40);
}

TEST(TreePageTest, EmptyPage) {
  auto r = ParseTreePage("[]");
  ASSERT_TRUE(r.ok());
  EXPECT_TRUE(r->empty());
}

TEST(TreePageTest, RejectsHostileEntries) {
  std::vector<std::string> bad = {
      "{}",
      "null",
      R"({"a":1})",
      "[1]",
      R"(["x"])",
      "[null]",
      "[" + FileJson("../x") + "]",
      "[" + FileJson("/abs") + "]",
      "[" + FileJson("a//b") + "]",
      "[" + FileJson("a/./b") + "]",
      "[" + FileJson("") + "]",
      "[" + FileJson("a/") + "]",
      "[" + FileJson("a\\\\b") + "]",
      "[" + FileJson("a\\u0000b") + "]",
      "[" + FileJson("x", "-1") + "]",
      "[" + FileJson("x", "1.5") + "]",
      "[" + FileJson("x", "\"10\"") + "]",
      "[" + FileJson("x", "1e3") + "]",
      "[" + FileJson("x", "18446744073709551615") + "]",
      "[" + FileJson("x", "99999999999999999999999999") + "]",
      "[" + FileJson("x", std::to_string(kMaxFileSize + 1)) + "]",
      "[" + FileJson("x", "null") + "]",
      "[" + FileJson("x", "1", "abc") + "]",
      "[" + FileJson("x", "1", kOid40 + "0") + "]",
      "[" + FileJson("x", "1", std::string(40, 'g')) + "]",
      R"([{"type":"file","size":1,"path":"x"}])",
      R"([{"type":"file","oid":")" + kOid40 + R"(","path":"x"}])",
      R"([{"type":"symlink","oid":")" + kOid40 + R"(","size":1,"path":"x"}])",
      R"([{"oid":")" + kOid40 + R"(","size":1,"path":"x"}])",
      R"([{"type":"file","oid":")" + kOid40 + R"(","size":1,"path":5}])",
      R"([{"type":"file","oid":")" + kOid40 + R"(","size":1,"path":"x","lfs":{"oid":"abc","size":1}}])",
      R"([{"type":"file","oid":")" + kOid40 + R"(","size":1,"path":"x","lfs":{"oid":")" + kSha64 + R"("}}])",
      R"([{"type":"file","oid":")" + kOid40 + R"(","size":1,"path":"x","lfs":{"oid":")" + kSha64 +
          R"(","size":-4}}])",
      R"([{"type":"file","oid":")" + kOid40 + R"(","size":1,"path":"x","lfs":"yes"}])",
      R"([{"type":"directory","oid":"zz","size":0,"path":"d"}])",
      R"([{"type":"directory","size":0,"path":"../d"}])",
      "[" + FileJson("ok") + ",",
      "[" + FileJson("ok") + "] trailing",
  };
  for (const std::string& b : bad) {
    auto r = ParseTreePage(b);
    EXPECT_FALSE(r.ok()) << b;
    if (!r.ok()) {
      EXPECT_EQ(r.status().code(), Code::kInvalidArgument) << b;
    }
  }
  // Invalid UTF-8 in a path is malformed JSON.
  EXPECT_FALSE(ParseTreePage("[" + FileJson("a\xff") + "]").ok());
}

TEST(TreePageTest, OneBadEntryFailsThePage) {
  auto r = ParseTreePage("[" + FileJson("good") + "," + FileJson("../evil") + "]");
  EXPECT_FALSE(r.ok());
}

// ---- accumulation

std::vector<FileEntry> Page(std::initializer_list<std::pair<std::string, bool>> items) {
  std::vector<FileEntry> v;
  for (auto& [p, dir] : items) {
    FileEntry e;
    e.path = p;
    e.is_dir = dir;
    if (!dir) e.git_oid = kOid40, e.size = 1;
    v.push_back(e);
  }
  return v;
}

TEST(TreeAccumulatorTest, MergesPagesAndSynthesizesParents) {
  TreeAccumulator acc(100);
  ASSERT_TRUE(acc.Add(Page({{"a/b/c.bin", false}, {"z.txt", false}})).ok());
  ASSERT_TRUE(acc.Add(Page({{"a", true}, {"d/e", false}})).ok());
  auto r = std::move(acc).Finish();
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  std::vector<std::string> paths;
  for (auto& e : *r) paths.push_back(e.path + (e.is_dir ? "/" : ""));
  EXPECT_EQ(paths, (std::vector<std::string>{"a/", "a/b/", "a/b/c.bin", "d/", "d/e", "z.txt"}));
}

TEST(TreeAccumulatorTest, RejectsDuplicatesAcrossPages) {
  TreeAccumulator acc(100);
  ASSERT_TRUE(acc.Add(Page({{"x", false}})).ok());
  EXPECT_FALSE(acc.Add(Page({{"x", false}})).ok());
  TreeAccumulator acc2(100);
  ASSERT_TRUE(acc2.Add(Page({{"x", false}})).ok());
  EXPECT_FALSE(acc2.Add(Page({{"x", true}})).ok());
}

TEST(TreeAccumulatorTest, RejectsFileUsedAsDirectory) {
  TreeAccumulator acc(100);
  ASSERT_TRUE(acc.Add(Page({{"a", false}})).ok());
  ASSERT_TRUE(acc.Add(Page({{"a/b", false}})).ok());
  EXPECT_FALSE(std::move(acc).Finish().ok());
  TreeAccumulator deep(100);
  ASSERT_TRUE(deep.Add(Page({{"a/b", false}, {"a/b/c/d", false}})).ok());
  EXPECT_FALSE(std::move(deep).Finish().ok());
}

TEST(TreeAccumulatorTest, CapsEntries) {
  TreeAccumulator acc(3);
  EXPECT_TRUE(acc.Add(Page({{"a", false}, {"b", false}, {"c", false}})).ok());
  EXPECT_FALSE(acc.Add(Page({{"d", false}})).ok());
  TreeAccumulator acc2(3);
  ASSERT_TRUE(acc2.Add(Page({{"x/y/z/f", false}})).ok());
  EXPECT_FALSE(std::move(acc2).Finish().ok());  // 1 + 3 synthesized parents > 3
}

// ---- URLs

TEST(UrlTest, Parse) {
  auto u = ParseUrl("HTTPS://Example.COM/a/b?x=1#frag");
  ASSERT_TRUE(u.ok());
  EXPECT_EQ(u->scheme, "https");
  EXPECT_EQ(u->host, "example.com");
  EXPECT_EQ(u->port, 443);
  EXPECT_EQ(u->path, "/a/b");
  EXPECT_EQ(u->query, "x=1");
  EXPECT_EQ(u->Origin(), "https://example.com:443");
  EXPECT_EQ(u->HostPort(), "example.com:443");
  auto v6 = ParseUrl("http://[::1]:8080");
  ASSERT_TRUE(v6.ok());
  EXPECT_EQ(v6->host, "[::1]");
  EXPECT_EQ(v6->port, 8080);
  EXPECT_EQ(v6->path, "/");
  for (const char* bad :
       {"", "example.com/x", "http://", "http://user:pw@host/", "http://host:0/", "http://host:65536/",
        "http://host:abc/", "http://host:/", "http://ho st/", "://x", "http://[::1/"})
    EXPECT_FALSE(ParseUrl(bad).ok()) << bad;
}

TEST(UrlTest, OriginAndSameOrigin) {
  EXPECT_EQ(*UrlOrigin("http://127.0.0.1:8080/x"), "http://127.0.0.1:8080");
  EXPECT_EQ(*UrlOrigin("https://huggingface.co"), "https://huggingface.co:443");
  EXPECT_TRUE(SameOrigin("https://huggingface.co/a", "https://huggingface.co:443/b?c"));
  EXPECT_TRUE(SameOrigin("http://h/a", "http://H:80/"));
  EXPECT_FALSE(SameOrigin("http://127.0.0.1:8080/", "http://127.0.0.1:8081/"));
  EXPECT_FALSE(SameOrigin("http://h/", "https://h/"));
  EXPECT_FALSE(SameOrigin("http://h/", "http://h.evil/"));
  EXPECT_FALSE(SameOrigin("garbage", "garbage"));
}

TEST(UrlTest, ResolveLocation) {
  const std::string base = "http://127.0.0.1:9/org/x/resolve/main/config.json?q=1";
  EXPECT_EQ(*ResolveLocation(base, "/api/resolve-cache/models/org/x/abc/config.json?etag=%22e%22"),
            "http://127.0.0.1:9/api/resolve-cache/models/org/x/abc/config.json?etag=%22e%22");
  EXPECT_EQ(*ResolveLocation(base, "other.json"), "http://127.0.0.1:9/org/x/resolve/main/other.json");
  EXPECT_EQ(*ResolveLocation(base, "../../new/x"), "http://127.0.0.1:9/org/x/new/x");
  EXPECT_EQ(*ResolveLocation(base, "/../../../etc"), "http://127.0.0.1:9/etc");
  EXPECT_EQ(*ResolveLocation(base, "https://cdn.example/a?Expires=5&Signature=s"),
            "https://cdn.example/a?Expires=5&Signature=s");
  EXPECT_EQ(*ResolveLocation(base, "//cdn.example:8443/a"), "http://cdn.example:8443/a");
  EXPECT_EQ(*ResolveLocation(base, "?z=2"), "http://127.0.0.1:9/org/x/resolve/main/config.json?z=2");
  EXPECT_FALSE(ResolveLocation(base, "file:///etc/passwd").ok());  // empty host
  EXPECT_FALSE(ResolveLocation(base, "javascript:alert(1)").ok());
  auto ftp = ResolveLocation(base, "ftp://h/x");
  ASSERT_TRUE(ftp.ok());
  EXPECT_EQ(ParseUrl(*ftp)->scheme, "ftp");
  EXPECT_FALSE(ResolveLocation(base, "").ok());
  EXPECT_FALSE(ResolveLocation(base, "/a b").ok());
  EXPECT_FALSE(ResolveLocation("not a url", "/x").ok());
}

TEST(UrlTest, Rebase) {
  EXPECT_EQ(*RebaseOnto("https://huggingface.co/api/models/o/n/tree/main?cursor=abc&limit=2",
                        "http://127.0.0.1:8080"),
            "http://127.0.0.1:8080/api/models/o/n/tree/main?cursor=abc&limit=2");
  EXPECT_FALSE(RebaseOnto("nope", "http://127.0.0.1").ok());
}

TEST(UrlTest, ExpiresAndStrip) {
  EXPECT_EQ(ParseExpires("https://c/x?X-Amz-Expires=3600&Expires=1712345678&Signature=s"), 1712345678);
  EXPECT_EQ(ParseExpires("https://c/x?Expires=1712345678"), 1712345678);
  EXPECT_EQ(ParseExpires("https://c/x?X-Amz-Expires=3600"), std::nullopt);
  EXPECT_EQ(ParseExpires("https://c/x?Expires=soon"), std::nullopt);
  EXPECT_EQ(ParseExpires("https://c/x?Expires=-5"), std::nullopt);
  EXPECT_EQ(ParseExpires("https://c/x?Expires=99999999999999999999999"), std::nullopt);
  EXPECT_EQ(ParseExpires("https://c/Expires=5"), std::nullopt);
  EXPECT_EQ(StripQuery("https://c/x?Signature=secret#f"), "https://c/x");
  EXPECT_EQ(StripQuery("https://c/x"), "https://c/x");
}

}  // namespace
}  // namespace modelfs::protocol

namespace modelfs::protocol {
namespace {

// Found by tests/fuzz/run.sh: "https://a=1:7x:443/p" parsed with host "a=1:7x", whose origin did
// not parse again. Hosts are now restricted to what a hub host can be.
TEST(ProtocolFuzzRegressions, HostsWithOddCharactersAreRejected) {
  EXPECT_FALSE(ParseUrl("https://xpires=1:700ature=abcr8g:443/x/y").ok());
  EXPECT_FALSE(ParseUrl("https://a:b:443/").ok());
  EXPECT_FALSE(ParseUrl("https://h\xd4st/").ok());
  EXPECT_FALSE(ParseUrl("https://[]/").ok());
  EXPECT_FALSE(ParseUrl("https://[::1%eth0]/").ok());
  EXPECT_TRUE(ParseUrl("https://[::1]:8080/x").ok());
  EXPECT_TRUE(ParseUrl("http://127.0.0.1:8080/x").ok());
  EXPECT_TRUE(ParseUrl("https://cdn-lfs.hf.co/repos/x?Expires=1").ok());
}

TEST(ProtocolEtag, DigestsAreExtractedOnlyFromHexTags) {
  const std::string sha(64, 'a'), oid(40, 'b');
  EXPECT_EQ(ParseEtagDigest("\"" + sha + "\""), sha);
  EXPECT_EQ(ParseEtagDigest("W/\"" + oid + "\""), oid);
  EXPECT_EQ(ParseEtagDigest(" \"" + std::string(64, 'A') + "\" "), sha);
  EXPECT_FALSE(ParseEtagDigest("\"xet-1234\"").has_value());
  EXPECT_FALSE(ParseEtagDigest("\"" + std::string(63, 'a') + "\"").has_value());
  EXPECT_FALSE(ParseEtagDigest("").has_value());
}

}  // namespace
}  // namespace modelfs::protocol
