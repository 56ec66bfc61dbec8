// The hub protocol's headers and JSON answers, and the checks on what they name (paths, hashes).
// URLs (percent-encoding, parsing, origins, redirects, signed-URL expiry) are in
// fetch/protocol_url.cc.
#include "fetch/protocol.h"

#include <algorithm>
#include <cctype>
#include <nlohmann/json.hpp>
#include <set>

#include "fetch/protocol_text.h"

namespace modelfs::protocol {
namespace {

using nlohmann::json;
using text::Lower;
using text::ParseU64;
using text::Trim;

bool EqualsIgnoreCase(std::string_view a, std::string_view b) {
  return a.size() == b.size() && Lower(a) == Lower(b);
}

// A JSON integer in [0, kMaxFileSize]; floats, negatives, strings and huge values are rejected.
bool JsonSize(const json& v, uint64_t* out) {
  if (v.is_number_unsigned()) {
    uint64_t x = v.get<uint64_t>();
    if (x > kMaxFileSize) return false;
    *out = x;
    return true;
  }
  if (v.is_number_integer()) {
    int64_t x = v.get<int64_t>();
    if (x < 0 || static_cast<uint64_t>(x) > kMaxFileSize) return false;
    *out = static_cast<uint64_t>(x);
    return true;
  }
  return false;
}

Result<json> ParseJson(std::string_view body) {
  if (Status s = CheckJsonShape(body); !s.ok()) return s;
  json j = json::parse(body.begin(), body.end(), nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) return Status::InvalidArgument("malformed JSON");
  return j;
}

Status EntryError(size_t index, const std::string& why) {
  return Status::InvalidArgument("tree entry " + std::to_string(index) + ": " + why);
}

}  // namespace

Result<ContentRange> ParseContentRange(std::string_view value) {
  std::string_view v = Trim(value);
  auto bad = [&] { return Status::InvalidArgument("bad Content-Range"); };
  if (v.size() < 6 || !EqualsIgnoreCase(v.substr(0, 6), "bytes ")) return bad();
  v.remove_prefix(6);
  size_t dash = v.find('-');
  size_t slash = v.find('/');
  if (dash == std::string_view::npos || slash == std::string_view::npos || dash > slash) return bad();
  ContentRange cr;
  if (!ParseU64(v.substr(0, dash), &cr.first) || !ParseU64(v.substr(dash + 1, slash - dash - 1), &cr.last) ||
      !ParseU64(v.substr(slash + 1), &cr.total)) {
    return bad();
  }
  if (cr.first > cr.last || cr.last >= cr.total) return bad();
  return cr;
}

std::optional<std::string> ParseLinkNext(std::string_view header) {
  size_t i = 0;
  while (i < header.size()) {
    size_t lt = header.find('<', i);
    if (lt == std::string_view::npos) return std::nullopt;
    size_t gt = header.find('>', lt + 1);
    if (gt == std::string_view::npos) return std::nullopt;
    std::string_view target = header.substr(lt + 1, gt - lt - 1);
    // Parameters run until the next comma that is outside quotes.
    size_t k = gt + 1;
    bool in_quote = false;
    size_t end = header.size();
    for (; k < header.size(); ++k) {
      char c = header[k];
      if (c == '"') in_quote = !in_quote;
      if (c == ',' && !in_quote) {
        end = k;
        break;
      }
    }
    std::string_view params = header.substr(gt + 1, end - gt - 1);
    // Walk ";name=value" pairs.
    size_t p = 0;
    while (p < params.size()) {
      size_t semi = params.find(';', p);
      if (semi == std::string_view::npos) break;
      size_t next = semi + 1;
      bool q = false;
      size_t stop = next;
      for (; stop < params.size(); ++stop) {
        if (params[stop] == '"') q = !q;
        if (params[stop] == ';' && !q) break;
      }
      std::string_view kv = Trim(params.substr(next, stop - next));
      size_t eq = kv.find('=');
      if (eq != std::string_view::npos && EqualsIgnoreCase(Trim(kv.substr(0, eq)), "rel")) {
        std::string_view val = Trim(kv.substr(eq + 1));
        if (val.size() >= 2 && val.front() == '"' && val.back() == '"') val = val.substr(1, val.size() - 2);
        // rel may hold several space-separated relation types.
        size_t s = 0;
        while (s <= val.size()) {
          size_t e = val.find(' ', s);
          if (e == std::string_view::npos) e = val.size();
          if (EqualsIgnoreCase(val.substr(s, e - s), "next") && !Trim(target).empty())
            return std::string(Trim(target));
          s = e + 1;
        }
      }
      p = stop;
    }
    i = end + 1;
  }
  return std::nullopt;
}

std::optional<long> ParseRetryDelayMs(std::string_view retry_after, std::string_view ratelimit, long cap_ms) {
  uint64_t secs = 0;
  std::string_view ra = Trim(retry_after);
  bool have = ParseU64(ra, &secs);
  // RateLimit: "api";r=0;t=42. Its t= is only a wait when the quota is spent (r=0): ordinary
  // answers carry the header too, with the time until the window resets.
  if (!have && (ratelimit.find(";r=0;") != std::string_view::npos ||
                (ratelimit.size() >= 4 && ratelimit.substr(ratelimit.size() - 4) == ";r=0"))) {
    std::string_view rl = ratelimit;
    size_t pos = 0;
    while ((pos = rl.find("t=", pos)) != std::string_view::npos) {
      if (pos == 0 || rl[pos - 1] == ';' || rl[pos - 1] == ' ') {
        size_t e = pos + 2;
        while (e < rl.size() && rl[e] >= '0' && rl[e] <= '9') ++e;
        if (ParseU64(rl.substr(pos + 2, e - pos - 2), &secs)) {
          have = true;
          break;
        }
      }
      pos += 2;
    }
  }
  if (!have) return std::nullopt;
  uint64_t cap = cap_ms < 0 ? 0 : static_cast<uint64_t>(cap_ms);
  if (secs > cap / 1000 + 1) return cap_ms;
  return static_cast<long>(std::min<uint64_t>(secs * 1000, cap));
}

Status CheckJsonShape(std::string_view body) {
  if (body.size() > kMaxJsonBodyBytes) return Status::InvalidArgument("JSON body too large");
  int depth = 0;
  bool in_string = false;
  for (size_t i = 0; i < body.size(); ++i) {
    char c = body[i];
    if (in_string) {
      if (c == '\\')
        ++i;
      else if (c == '"')
        in_string = false;
      continue;
    }
    if (c == '"') {
      in_string = true;
    } else if (c == '[' || c == '{') {
      if (++depth > kMaxJsonDepth) return Status::InvalidArgument("JSON nested too deeply");
    } else if (c == ']' || c == '}') {
      --depth;
    }
  }
  return Status::Ok();
}

Result<std::string> ParseRevisionSha(std::string_view body) {
  Result<RevisionAnswer> r = ParseRevision(body);
  if (!r.ok()) return r.status();
  return std::move(r->sha);
}

bool IsHex(std::string_view s, size_t n, bool lowercase_only) {
  if (s.size() != n) return false;
  for (char c : s) {
    bool ok = (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (!lowercase_only && c >= 'A' && c <= 'F');
    if (!ok) return false;
  }
  return true;
}

Status ValidateRepoPath(std::string_view path) {
  if (path.empty()) return Status::InvalidArgument("empty path");
  if (path.size() > kMaxPathBytes) return Status::InvalidArgument("path too long");
  if (path.front() == '/') return Status::InvalidArgument("absolute path");
  if (path.find('\0') != std::string_view::npos) return Status::InvalidArgument("NUL in path");
  if (path.find('\\') != std::string_view::npos) return Status::InvalidArgument("backslash in path");
  size_t i = 0;
  while (i <= path.size()) {
    size_t j = path.find('/', i);
    if (j == std::string_view::npos) j = path.size();
    std::string_view seg = path.substr(i, j - i);
    if (seg.empty()) return Status::InvalidArgument("empty path segment");
    if (seg == "." || seg == "..") return Status::InvalidArgument("dot segment in path");
    if (seg.size() > kMaxSegmentBytes) return Status::InvalidArgument("path segment too long");
    i = j + 1;
  }
  return Status::Ok();
}

namespace {

// A file's fields, as a /tree entry (`oid`, lfs.`oid`) or a repo-info sibling (`blobId`,
// lfs.`sha256`) names them: the 40-hex git oid, the size, and for LFS files the 64-hex SHA-256 and
// the real size. An error names the field (without the entry's index).
Status ParseFileFields(const json& e, const char* oid_key, const char* lfs_hash_key, FileEntry* fe) {
  auto oid = e.find(oid_key);
  if (oid == e.end() || !oid->is_string() || !IsHex(oid->get_ref<const std::string&>(), 40))
    return Status::InvalidArgument(std::string("bad or missing ") + oid_key);
  fe->git_oid = Lower(oid->get_ref<const std::string&>());
  auto size = e.find("size");
  if (size == e.end() || !JsonSize(*size, &fe->size)) return Status::InvalidArgument("bad or missing size");
  auto lfs = e.find("lfs");
  if (lfs == e.end() || lfs->is_null()) return Status::Ok();
  if (!lfs->is_object()) return Status::InvalidArgument("lfs is not an object");
  auto hash = lfs->find(lfs_hash_key);
  auto lsize = lfs->find("size");
  if (hash == lfs->end() || !hash->is_string() || !IsHex(hash->get_ref<const std::string&>(), 64))
    return Status::InvalidArgument(std::string("bad lfs.") + lfs_hash_key);
  uint64_t real = 0;
  if (lsize == lfs->end() || !JsonSize(*lsize, &real)) return Status::InvalidArgument("bad lfs.size");
  auto psize = lfs->find("pointerSize");
  uint64_t ignored = 0;
  if (psize != lfs->end() && !JsonSize(*psize, &ignored)) return Status::InvalidArgument("bad lfs.pointerSize");
  fe->sha256 = Lower(hash->get_ref<const std::string&>());
  fe->size = real;  // the top-level size of an LFS entry may be its pointer file's, not the blob's
  return Status::Ok();
}

}  // namespace

Result<std::vector<FileEntry>> ParseTreePage(std::string_view body) {
  Result<json> j = ParseJson(body);
  if (!j.ok()) return j.status();
  if (!j->is_array()) return Status::InvalidArgument("tree page is not an array");
  std::vector<FileEntry> out;
  out.reserve(j->size());
  size_t index = 0;
  for (const json& e : *j) {
    if (!e.is_object()) return EntryError(index, "not an object");
    auto type = e.find("type");
    auto path = e.find("path");
    if (type == e.end() || !type->is_string()) return EntryError(index, "missing type");
    if (path == e.end() || !path->is_string()) return EntryError(index, "missing path");
    FileEntry fe;
    fe.path = path->get<std::string>();
    if (Status s = ValidateRepoPath(fe.path); !s.ok()) return EntryError(index, s.message());
    const std::string& t = type->get_ref<const std::string&>();
    if (t == "directory") {
      fe.is_dir = true;
      auto oid = e.find("oid");
      if (oid != e.end()) {
        if (!oid->is_string() || !IsHex(oid->get_ref<const std::string&>(), 40))
          return EntryError(index, "bad directory oid");
        fe.git_oid = Lower(oid->get_ref<const std::string&>());
      }
    } else if (t == "file") {
      if (Status s = ParseFileFields(e, "oid", "oid", &fe); !s.ok()) return EntryError(index, s.message());
    } else {
      return EntryError(index, "unknown type");
    }
    out.push_back(std::move(fe));
    ++index;
  }
  return out;
}

Result<RevisionAnswer> ParseRevision(std::string_view body) {
  Result<json> j = ParseJson(body);
  if (!j.ok()) return j.status();
  if (!j->is_object()) return Status::InvalidArgument("revision answer is not an object");
  auto it = j->find("sha");
  if (it == j->end() || !it->is_string()) return Status::InvalidArgument("revision answer has no sha");
  RevisionAnswer out;
  out.sha = it->get<std::string>();
  if (!IsHex(out.sha, 40, /*lowercase_only=*/true))
    return Status::InvalidArgument("revision sha is not 40 lowercase hex");
  // The listing, if the siblings can stand in for /tree: present, not empty (an empty repo is
  // rare, and an empty list is also what a server that truncates sends), under the size at
  // which the hub truncates them, and every one a file with the fields blobs=true adds. Anything
  // else (a mirror that ignores blobs=true, a malformed sibling) leaves the listing to /tree,
  // which validates its own answer: the siblings never make a lookup fail.
  auto sib = j->find("siblings");
  if (sib == j->end() || !sib->is_array() || sib->empty() || sib->size() >= kMaxRevisionSiblings) return out;
  std::vector<FileEntry> files;
  files.reserve(sib->size());
  for (const json& e : *sib) {
    if (!e.is_object()) return out;
    auto name = e.find("rfilename");
    if (name == e.end() || !name->is_string()) return out;
    FileEntry fe;
    fe.path = name->get<std::string>();
    if (!ValidateRepoPath(fe.path).ok() || !ParseFileFields(e, "blobId", "sha256", &fe).ok()) return out;
    files.push_back(std::move(fe));
  }
  out.files = std::move(files);
  return out;
}

Status TreeAccumulator::Add(std::vector<FileEntry> page) {
  for (FileEntry& e : page) {
    if (entries_.size() >= max_entries_) return Status::InvalidArgument("tree has too many entries");
    std::string path = e.path;
    auto [it, inserted] = entries_.emplace(std::move(path), std::move(e));
    if (!inserted) return Status::InvalidArgument("tree lists path twice: " + it->first);
  }
  return Status::Ok();
}

Result<std::vector<FileEntry>> TreeAccumulator::Finish() && {
  // Every ancestor of every entry must be a directory: add the missing ones, reject files.
  std::vector<std::string> missing;
  std::set<std::string> added;
  for (const auto& [path, e] : entries_) {
    size_t pos = path.size();
    while ((pos = path.rfind('/', pos - 1)) != std::string::npos && pos > 0) {
      std::string parent = path.substr(0, pos);
      auto it = entries_.find(parent);
      if (it != entries_.end()) {
        if (!it->second.is_dir) return Status::InvalidArgument("path is both file and directory: " + parent);
        break;  // parent exists as a directory; its own ancestors are checked on its turn
      }
      if (!added.insert(parent).second) break;
      missing.push_back(parent);
    }
  }
  if (entries_.size() + missing.size() > max_entries_)
    return Status::InvalidArgument("tree has too many entries");
  for (std::string& m : missing) {
    FileEntry d;
    d.is_dir = true;
    d.path = m;
    std::string key = m;
    entries_.emplace(std::move(key), std::move(d));
  }
  std::vector<FileEntry> out;
  out.reserve(entries_.size());
  for (auto& [path, e] : entries_) {
    if (e.is_dir) e.size = 0;
    out.push_back(std::move(e));
  }
  entries_.clear();
  return out;
}

std::optional<std::string> ParseEtagDigest(std::string_view v) {
  while (!v.empty() && (v.front() == ' ' || v.front() == '\t')) v.remove_prefix(1);
  while (!v.empty() && (v.back() == ' ' || v.back() == '\t')) v.remove_suffix(1);
  if (v.size() >= 2 && (v[0] == 'W' || v[0] == 'w') && v[1] == '/') v.remove_prefix(2);
  if (v.size() >= 2 && v.front() == '"' && v.back() == '"') v = v.substr(1, v.size() - 2);
  if (!IsHex(v, 40) && !IsHex(v, 64)) return std::nullopt;
  std::string out(v);
  for (char& c : out) c = static_cast<char>(tolower(static_cast<unsigned char>(c)));
  return out;
}

}  // namespace modelfs::protocol