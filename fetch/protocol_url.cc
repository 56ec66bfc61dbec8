// The hub protocol's URLs: percent-encoding (urllib.parse.quote), parsing and origins (the token
// rules compare origins), relative redirects (RFC 3986 reference resolution), rebasing an API URL
// onto a mirror, and the expiry a signed CDN URL carries. Headers and JSON answers are in
// fetch/protocol.cc.
#include "fetch/protocol.h"

#include <algorithm>
#include <cctype>

#include "fetch/protocol_text.h"

namespace modelfs::protocol {
namespace {

using text::Lower;
using text::ParseU64;
using text::Trim;

bool IsUnreserved(unsigned char c) { return std::isalnum(c) || c == '_' || c == '.' || c == '-' || c == '~'; }

std::string Quote(std::string_view s, bool keep_slash) {
  static const char kHex[] = "0123456789ABCDEF";
  std::string out;
  out.reserve(s.size());
  for (unsigned char c : s) {
    if (IsUnreserved(c) || (keep_slash && c == '/')) {
      out += static_cast<char>(c);
    } else {
      out += '%';
      out += kHex[c >> 4];
      out += kHex[c & 15];
    }
  }
  return out;
}

int DefaultPort(std::string_view scheme) {
  if (scheme == "http") return 80;
  if (scheme == "https") return 443;
  return 0;
}

// RFC 3986 5.2.4.
std::string RemoveDotSegments(std::string_view in) {
  std::vector<std::string_view> out;
  bool trailing_slash = false;
  size_t i = 0;
  if (!in.empty() && in[0] == '/') i = 1;
  while (i <= in.size()) {
    size_t j = in.find('/', i);
    if (j == std::string_view::npos) j = in.size();
    std::string_view seg = in.substr(i, j - i);
    bool last = j == in.size();
    if (seg == ".") {
      trailing_slash = last;
    } else if (seg == "..") {
      if (!out.empty()) out.pop_back();
      trailing_slash = last;
    } else {
      out.push_back(seg);
      trailing_slash = false;
    }
    i = j + 1;
  }
  std::string result = "/";
  for (size_t k = 0; k < out.size(); ++k) {
    if (k) result += '/';
    result += out[k];
  }
  if (trailing_slash && result.back() != '/') result += '/';
  return result;
}

}  // namespace

std::string QuoteRevision(std::string_view rev) { return Quote(rev, false); }
std::string QuotePath(std::string_view path) { return Quote(path, true); }

std::string Url::Origin() const { return scheme + "://" + host + ":" + std::to_string(port); }
std::string Url::HostPort() const { return host + ":" + std::to_string(port); }
std::string Url::ToString() const {
  std::string s = scheme + "://" + host;
  if (port != DefaultPort(scheme)) {
    s += ':';  // appended, not ":" + ...: GCC 12's -Wrestrict false positive at -O3
    s += std::to_string(port);
  }
  return s + PathAndQuery();
}

Result<Url> ParseUrl(std::string_view url) {
  auto bad = [&](const char* why) { return Status::InvalidArgument(std::string("bad URL: ") + why); };
  size_t colon = url.find("://");
  if (colon == std::string_view::npos || colon == 0) return bad("no scheme");
  Url u;
  u.scheme = Lower(url.substr(0, colon));
  for (char c : u.scheme)
    if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '+' || c == '-' || c == '.'))
      return bad("scheme");
  std::string_view rest = url.substr(colon + 3);
  for (char c : rest)
    if (static_cast<unsigned char>(c) <= 0x20 || c == 0x7f) return bad("control character or space");
  size_t auth_end = rest.find_first_of("/?#");
  std::string_view authority = rest.substr(0, auth_end);
  std::string_view tail = auth_end == std::string_view::npos ? std::string_view() : rest.substr(auth_end);
  if (authority.find('@') != std::string_view::npos) return bad("userinfo");
  if (tail.find('#') != std::string_view::npos) tail = tail.substr(0, tail.find('#'));
  std::string_view hostpart = authority;
  std::string_view portpart;
  if (!authority.empty() && authority.front() == '[') {
    size_t rb = authority.find(']');
    if (rb == std::string_view::npos) return bad("IPv6 literal");
    hostpart = authority.substr(0, rb + 1);
    std::string_view after = authority.substr(rb + 1);
    if (!after.empty()) {
      if (after.front() != ':') return bad("after IPv6 literal");
      portpart = after.substr(1);
      if (portpart.empty()) return bad("empty port");
    }
  } else {
    size_t c = authority.rfind(':');
    if (c != std::string_view::npos) {
      hostpart = authority.substr(0, c);
      portpart = authority.substr(c + 1);
      if (portpart.empty()) return bad("empty port");
    }
  }
  if (hostpart.empty()) return bad("empty host");
  // A registered name or IPv4 address is letters, digits, '-', '.', '_' and '~' (percent-encoded
  // hosts are not used by any hub); an IPv6 literal is hex, ':' and '.' inside brackets. Anything
  // else (a second ':', '=', bytes >= 0x80) would make the origin ambiguous: found by fuzzing.
  {
    bool v6 = hostpart.front() == '[';
    std::string_view h = v6 ? hostpart.substr(1, hostpart.size() - 2) : hostpart;
    if (h.empty()) return bad("empty host");
    for (char ch : h) {
      unsigned char c = static_cast<unsigned char>(ch);
      bool ok = v6 ? (isxdigit(c) || c == ':' || c == '.')
                   : (isalnum(c) || c == '-' || c == '.' || c == '_' || c == '~');
      if (!ok) return bad("host");
    }
  }
  u.host = Lower(hostpart);
  if (!portpart.empty()) {
    uint64_t p = 0;
    if (!ParseU64(portpart, &p) || p == 0 || p > 65535) return bad("port");
    u.port = static_cast<int>(p);
  } else {
    u.port = DefaultPort(u.scheme);
  }
  size_t q = tail.find('?');
  u.path = std::string(tail.substr(0, q));
  if (q != std::string_view::npos) u.query = std::string(tail.substr(q + 1));
  if (u.path.empty()) u.path.push_back('/');  // not = "/": GCC 12's -Wrestrict false positive at -O3
  return u;
}

Result<std::string> UrlOrigin(std::string_view url) {
  Result<Url> u = ParseUrl(url);
  if (!u.ok()) return u.status();
  return u->Origin();
}

bool SameOrigin(std::string_view a, std::string_view b) {
  Result<Url> ua = ParseUrl(a), ub = ParseUrl(b);
  return ua.ok() && ub.ok() && ua->Origin() == ub->Origin();
}

Result<std::string> ResolveLocation(std::string_view base, std::string_view location) {
  std::string_view loc = Trim(location);
  if (loc.empty()) return Status::InvalidArgument("empty Location");
  Result<Url> b = ParseUrl(base);
  if (!b.ok()) return b.status();
  // Absolute: a scheme (letters, digits, +-.) followed by ':' before any '/', '?' or '#'.
  size_t first_special = loc.find_first_of(":/?#");
  if (first_special != std::string_view::npos && loc[first_special] == ':' && first_special > 0 &&
      std::isalpha(static_cast<unsigned char>(loc[0]))) {
    Result<Url> a = ParseUrl(loc);
    if (!a.ok()) return a.status();
    Url u = std::move(a.value());
    u.path = RemoveDotSegments(u.path);
    return u.ToString();
  }
  if (loc.substr(0, 2) == "//") {
    Result<Url> a = ParseUrl(b->scheme + ":" + std::string(loc));
    if (!a.ok()) return a.status();
    return a->ToString();
  }
  Url u = b.value();
  std::string_view ref = loc;
  if (size_t h = ref.find('#'); h != std::string_view::npos) ref = ref.substr(0, h);
  for (char c : ref)
    if (static_cast<unsigned char>(c) <= 0x20 || c == 0x7f) return Status::InvalidArgument("bad Location");
  size_t q = ref.find('?');
  std::string_view rpath = ref.substr(0, q);
  std::string rquery = q == std::string_view::npos ? "" : std::string(ref.substr(q + 1));
  if (rpath.empty()) {
    if (q != std::string_view::npos) u.query = rquery;
    return u.ToString();
  }
  if (rpath.front() == '/') {
    u.path = RemoveDotSegments(rpath);
  } else {
    std::string dir = u.path.substr(0, u.path.rfind('/') + 1);
    u.path = RemoveDotSegments(dir + std::string(rpath));
  }
  u.query = rquery;
  return u.ToString();
}

Result<std::string> RebaseOnto(std::string_view url, std::string_view endpoint) {
  Result<Url> u = ParseUrl(url);
  if (!u.ok()) return u.status();
  Result<Url> e = ParseUrl(endpoint);
  if (!e.ok()) return e.status();
  Url out = u.value();
  out.scheme = e->scheme;
  out.host = e->host;
  out.port = e->port;
  return out.ToString();
}

std::optional<int64_t> ParseExpires(std::string_view url) {
  size_t q = url.find('?');
  if (q == std::string_view::npos) return std::nullopt;
  std::string_view query = url.substr(q + 1);
  if (size_t h = query.find('#'); h != std::string_view::npos) query = query.substr(0, h);
  size_t i = 0;
  while (i <= query.size()) {
    size_t amp = query.find('&', i);
    if (amp == std::string_view::npos) amp = query.size();
    std::string_view kv = query.substr(i, amp - i);
    if (kv.substr(0, 8) == "Expires=") {
      uint64_t v = 0;
      if (ParseU64(kv.substr(8), &v) && v <= static_cast<uint64_t>(INT64_MAX)) return static_cast<int64_t>(v);
      return std::nullopt;
    }
    i = amp + 1;
  }
  return std::nullopt;
}

std::string StripQuery(std::string_view url) {
  size_t q = url.find_first_of("?#");
  return std::string(url.substr(0, q));
}

}  // namespace modelfs::protocol
