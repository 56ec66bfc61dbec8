// libFuzzer target for every parser of network input in fetch/protocol.h, and for the safetensors
// header parser (cache/safetensors.h: a file's first bytes come from a mirror too). The first input byte
// picks the parser, the rest is the untrusted text (a header value, a JSON body, a URL). Each
// parser must return (OK or an error) without crashing, hanging, leaking or tripping ASan/UBSan,
// and a few cross-checks hold on success (a parsed Content-Range is ordered, a parsed tree has
// only valid paths, an origin round-trips, ...): a violated one aborts, which the fuzzer reports.
//
// Built and run by tests/fuzz/run.sh (clang -fsanitize=fuzzer,address,undefined); not part of the
// default build.
#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "cache/safetensors.h"
#include "fetch/protocol.h"

using namespace modelfs;
using namespace modelfs::protocol;

namespace {

void Check(bool ok) {
  if (!ok) abort();
}

// Splits the input in two at the first '\n' (for parsers taking two strings).
std::pair<std::string_view, std::string_view> Split(std::string_view s) {
  size_t nl = s.find('\n');
  if (nl == std::string_view::npos) return {s, {}};
  return {s.substr(0, nl), s.substr(nl + 1)};
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const uint8_t which = data[0];
  std::string_view in(reinterpret_cast<const char*>(data + 1), size - 1);
  switch (which % 11) {
    case 0: {  // Content-Range
      auto r = ParseContentRange(in);
      if (r.ok()) Check(r->first <= r->last && r->last < r->total);
      break;
    }
    case 1: {  // Link: rel="next"
      auto n = ParseLinkNext(in);
      if (n) Check(n->size() <= in.size());
      break;
    }
    case 2: {  // Retry-After + RateLimit
      auto [ra, rl] = Split(in);
      auto d = ParseRetryDelayMs(ra, rl, 10000);
      if (d) Check(*d >= 0 && *d <= 10000);
      break;
    }
    case 3: {  // repo info / revision JSON
      Status shape = CheckJsonShape(in);
      auto sha = ParseRevisionSha(in);
      if (sha.ok()) Check(shape.ok() && IsHex(*sha, 40, true));
      break;
    }
    case 4: {  // a tree page, then a second page (merge rules)
      auto [p1, p2] = Split(in);
      TreeAccumulator acc(100000);
      auto a = ParseTreePage(p1);
      if (a.ok()) {
        for (const auto& e : *a) Check(ValidateRepoPath(e.path).ok() && e.size <= kMaxFileSize);
        if (acc.Add(std::move(a.value())).ok()) {
          auto b = ParseTreePage(p2);
          if (b.ok() && acc.Add(std::move(b.value())).ok()) {
            auto all = std::move(acc).Finish();
            if (all.ok())
              for (const auto& e : *all) Check(ValidateRepoPath(e.path).ok());
          }
        }
      }
      break;
    }
    case 5: {  // URL parsing and origins
      auto u = ParseUrl(in);
      if (u.ok()) {
        auto o = UrlOrigin(u->ToString());
        Check(o.ok() && *o == u->Origin());
        Check(SameOrigin(u->ToString(), u->ToString()));
      }
      (void)StripQuery(in);
      (void)ParseExpires(in);
      break;
    }
    case 6: {  // Location against a base (redirects), and Link rebasing
      auto [base, loc] = Split(in);
      auto r = ResolveLocation(base, loc);
      if (r.ok()) Check(ParseUrl(*r).ok());
      (void)RebaseOnto(loc, base);
      break;
    }
    case 7: {  // ETag / X-Linked-Etag
      auto d = ParseEtagDigest(in);
      if (d) Check(IsHex(*d, d->size(), true) && (d->size() == 40 || d->size() == 64));
      break;
    }
    case 8: {  // repo paths from listings
      Status s = ValidateRepoPath(in);
      if (s.ok()) Check(!in.empty() && in[0] != '/' && in.find('\0') == std::string_view::npos);
      break;
    }
    case 9: {  // percent-encoding must be reversible in length terms and never contain raw '/'
      std::string q = QuoteRevision(in);
      Check(q.find('/') == std::string::npos && q.size() >= in.size());
      (void)QuotePath(in);
      break;
    }
    case 10: {  // a safetensors file's head: 8-byte length, then the JSON header
      if (in.size() < 8) break;
      const uint64_t file_size = in.size() + (static_cast<uint64_t>(which) << 20);
      auto n = SafetensorsHeaderLength(in.data(), file_size);
      if (!n.ok()) break;
      Check(*n > 0 && *n <= file_size - 8);
      std::string header(in.substr(8, std::min<uint64_t>(*n, in.size() - 8)));
      auto r = SafetensorsRegionEnds(header, *n, file_size);
      if (r.ok()) {
        Check(!r->empty() && r->back() == file_size && r->front() >= 8);
        for (size_t i = 1; i < r->size(); i++) Check((*r)[i - 1] < (*r)[i]);
      }
      break;
    }
  }
  return 0;
}
