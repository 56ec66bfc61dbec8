// Pure, socket-free pieces of the hub wire protocol (the HTTP API huggingface_hub speaks):
// URL encoding, header parsing (Content-Range, Link, Retry-After), JSON answers of the /api/
// endpoints, and URL origin arithmetic for the token rules. Every function here is deterministic
// and unit-tested with hostile inputs; the HTTP classes (http_hub_api.h, http_range_source.h) only
// move bytes and call into this file to decide what the bytes mean.
//
// Everything a server sends is untrusted: parsers return InvalidArgument (never throw, never
// crash) on anything malformed, oversized or too deeply nested.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/repo.h"
#include "common/status.h"

namespace modelfs::protocol {

// Largest JSON body any /api/ answer may have. A 1000-entry tree page is ~200 KiB; repo info with
// 50k siblings is a few MiB. 64 MiB leaves room for that and still bounds memory per request.
inline constexpr size_t kMaxJsonBodyBytes = 64u << 20;
// Deepest array/object nesting accepted. Real answers nest 3-4 levels (cardData can go deeper);
// 64 keeps parsers' and destructors' recursion small whatever a hostile server sends.
inline constexpr int kMaxJsonDepth = 64;
// Largest file size accepted from a listing: 1 PiB. Far above any real blob (HF caps plain HTTP at
// 50 GB) and far below 2^63, so offset arithmetic on it can never overflow.
inline constexpr uint64_t kMaxFileSize = uint64_t{1} << 50;
// Longest path (bytes) and path segment accepted; Linux PATH_MAX and NAME_MAX.
inline constexpr size_t kMaxPathBytes = 4096;
inline constexpr size_t kMaxSegmentBytes = 255;

// ---- Percent-encoding (Python urllib.parse.quote semantics: A-Z a-z 0-9 _ . - ~ never encoded).

// quote(rev, safe=""): "refs/pr/1" -> "refs%2Fpr%2F1". Used for revisions in every URL.
std::string QuoteRevision(std::string_view rev);
// quote(path) with the default safe="/": "a b/c#d" -> "a%20b/c%23d". Used for /resolve/ paths.
std::string QuotePath(std::string_view path);

// ---- Headers.

// "bytes <first>-<last>/<total>" with first <= last < total, digits only, no overflow.
struct ContentRange {
  uint64_t first = 0;
  uint64_t last = 0;  // inclusive
  uint64_t total = 0;
  bool operator==(const ContentRange &) const = default;
};
// Strict: rejects "*/N", unknown totals ("/*"), signs, spaces inside numbers, other units, trailing
// junk and overflowing numbers. Leading/trailing whitespace around the whole value is ignored.
Result<ContentRange> ParseContentRange(std::string_view value);

// The target of the first `rel="next"` link in an RFC 8288 Link header, or nullopt.
// Handles several comma-separated links, quoted or bare rel values and multi-valued rels.
std::optional<std::string> ParseLinkNext(std::string_view header);

// Delay requested by a 429/503: numeric `Retry-After: <s>` or, failing that, `t=<s>` of an IETF
// `RateLimit` header whose remaining quota is `r=0`. HTTP-date Retry-After values are ignored (nullopt).
// Milliseconds, capped at cap_ms.
std::optional<long> ParseRetryDelayMs(std::string_view retry_after, std::string_view ratelimit, long cap_ms);

// The hex digest an ETag / X-Linked-Etag carries: strips a weak "W/" prefix and the quotes, and
// returns it lowercase if it is exactly 40 or 64 hex digits (git SHA-1 / SHA-256); else nullopt
// (xet hashes, opaque CDN tags).
std::optional<std::string> ParseEtagDigest(std::string_view value);

// ---- JSON answers.

// Checks the body's size (kMaxJsonBodyBytes) and nesting depth (kMaxJsonDepth) without parsing it.
// Strings are skipped, so brackets inside them do not count.
Status CheckJsonShape(std::string_view body);

// The `sha` of a repo-info or /revision/ answer: must be 40 lowercase hex.
Result<std::string> ParseRevisionSha(std::string_view body);

// The hub truncates a repo-info answer's siblings at this many; huggingface_hub then lists /tree.
inline constexpr size_t kMaxRevisionSiblings = 50000;

// A repo-info or /revision/ answer asked with blobs=true: the commit (`sha`, as ParseRevisionSha),
// and the commit's files from `siblings` when they can stand in for a /tree listing (every sibling
// a valid path with `blobId`, `size` and, for LFS files, lfs.sha256; fewer than
// kMaxRevisionSiblings; not empty). Otherwise `files` is empty and the caller lists /tree: a bad
// sibling never fails the answer. Entries are unsorted and without directories (feed them to a
// TreeAccumulator).
struct RevisionAnswer {
  std::string sha;
  std::optional<std::vector<FileEntry>> files;
};
Result<RevisionAnswer> ParseRevision(std::string_view body);

// Validates a repo-relative path as FileEntry promises: non-empty, relative, no empty / "." / ".."
// segments, no NUL or backslash, bounded length.
Status ValidateRepoPath(std::string_view path);

// True if s is exactly n hex digits; lowercase_only also rejects A-F.
bool IsHex(std::string_view s, size_t n, bool lowercase_only = false);

// One /tree page (a JSON array) into entries. Files need a 40-hex `oid` and a size in
// [0, kMaxFileSize]; when `lfs` is present its 64-hex `oid` becomes sha256 and its `size` wins.
// Directories get size 0. Any malformed entry fails the whole page with InvalidArgument.
// Hex ids are returned lowercase.
Result<std::vector<FileEntry>> ParseTreePage(std::string_view body);

// Merges tree pages into one listing: rejects a path listed twice or used both as a file and as a
// directory (also implicitly, "a" a file while "a/b" exists), synthesizes missing parent
// directories, caps the total entry count. Not thread-safe (one per listing).
class TreeAccumulator {
 public:
  explicit TreeAccumulator(size_t max_entries) : max_entries_(max_entries) {}
  Status Add(std::vector<FileEntry> page);
  // Completes the listing (adds missing parents, final checks); entries sorted by path.
  Result<std::vector<FileEntry>> Finish() &&;
  size_t size() const { return entries_.size(); }

 private:
  size_t max_entries_;
  std::map<std::string, FileEntry> entries_;  // path -> entry
};

// ---- URLs.

struct Url {
  std::string scheme;  // lowercase: "http" / "https" (others parse, callers reject them)
  std::string host;    // lowercase; IPv6 literals keep their brackets: "[::1]"
  int port = 0;        // explicit or the scheme default (80/443); 0 if scheme unknown and none
  std::string path;    // starts with "/" ("/" if empty in the input)
  std::string query;   // without "?"; may be empty
  // "scheme://host:port", always with the port so that default and explicit ports compare equal.
  std::string Origin() const;
  // "host:port": a short label of who served bytes (served_by, logs).
  std::string HostPort() const;
  std::string PathAndQuery() const { return query.empty() ? path : path + "?" + query; }
  std::string ToString() const;  // scheme://host[:port]path[?query] (default port omitted)
};

// Parses an absolute URL (userinfo and fragments are rejected: a hub never needs them and they
// invite confusion about the real host).
Result<Url> ParseUrl(std::string_view url);
// "scheme://host:port" of url, or InvalidArgument.
Result<std::string> UrlOrigin(std::string_view url);
// Same scheme, host and (defaulted) port. False if either does not parse.
bool SameOrigin(std::string_view a, std::string_view b);
// RFC 3986 reference resolution of a Location header against the URL that answered: absolute,
// scheme-relative ("//h/p"), absolute-path ("/p") and relative ("p", "../p") forms.
Result<std::string> ResolveLocation(std::string_view base, std::string_view location);
// Replaces url's scheme://host:port with endpoint's, keeping path and query (Link rebasing).
Result<std::string> RebaseOnto(std::string_view url, std::string_view endpoint);
// The `Expires=<unix seconds>` query parameter of a signed URL, if present and numeric.
std::optional<int64_t> ParseExpires(std::string_view url);
// url without its query string and fragment: safe to log (signed URLs carry credentials there).
std::string StripQuery(std::string_view url);

}  // namespace modelfs::protocol
