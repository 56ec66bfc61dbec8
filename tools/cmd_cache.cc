#include "tools/cmd_cache.h"

#include <dirent.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <map>
#include <nlohmann/json.hpp>
#include <set>
#include <tuple>

#include "cache/cache_admin.h"
#include "cache/pins.h"
#include "common/file_util.h"
#include "tools/options.h"
#include "tools/status_file.h"

namespace modelfs::cli {
namespace {

struct CacheArgs {
  std::string dir;
  bool json = false;
  std::string repo_arg;  // verify: ORG/NAME[@REV]
  std::string size;      // gc: --size
};

// The options of status, verify and gc: gc's --size first, then the ones they share.
std::vector<OptionSpec> CacheToolOptions(bool with_size) {
  std::vector<OptionSpec> t;
  if (with_size) {
    t.push_back({"--size", nullptr, nullptr, "SIZE", "only remove unreferenced blobs",
                 "Target for the block data (B, KiB, MiB, GiB, TiB; KB/MB/GB are decimal), e.g. 10GiB."});
  }
  t.push_back(CacheDirOption());
  t.push_back({"--format", nullptr, nullptr, "FORMAT", "text", "Output as text or json (sizes in bytes)."});
  t.push_back({"--help", "-h", nullptr, nullptr, "", "Show this help."});
  return t;
}

// Parses the options of cache tool `command` ("modelfs gc"; CacheToolOptions; `allow_repo`: one
// optional ORG/NAME[@REV]); without --cache-dir, the directory comes from `env` and the config files.
bool ParseCacheArgs(const std::string& command, const std::vector<std::string>& args, const Environment& env,
                    bool allow_repo, bool allow_size, CacheArgs* a, std::string* err) {
  Result<ParsedArgs> parsed = ParseArgs(args, CacheToolOptions(allow_size), command);
  if (!parsed.ok()) {
    *err += parsed.status().message() + "\n";
    return false;
  }
  const ParsedArgs& p = parsed.value();
  if (p.positional.size() > (allow_repo ? 1u : 0u)) {
    *err += "bad argument: " + p.positional.back() + "\n";
    return false;
  }
  if (!p.positional.empty()) a->repo_arg = p.positional[0];
  if (const std::string* v = p.Last("--size")) a->size = *v;
  if (const std::string* v = p.Last("--format")) {
    if (*v != "json" && *v != "text") {
      *err += "--format must be text or json, not '" + *v + "'\n";
      return false;
    }
    a->json = *v == "json";
  }
  Result<std::string> dir = CacheDirOf(p, env);
  if (!dir.ok()) {
    *err += dir.status().message() + "\n";
    return false;
  }
  a->dir = dir.value();
  return true;
}

std::string Mib(uint64_t b) {
  char buf[32];
  snprintf(buf, sizeof buf, "%.1f MiB", b / 1048576.0);
  return buf;
}

bool WantsHelp(const std::vector<std::string>& args) {
  for (const auto& a : args)
    if (a == "--help" || a == "-h") return true;
  return false;
}

std::string StatusHelp() {
  return std::string(
             "Usage: modelfs status [--cache-dir DIR] [--format text|json]\n\n"
             "Shows what a cache directory holds, without the network: block data used and verified,\n"
             "the filesystem's free space, pins, and per stored repo revision each file's cached share\n"
             "and state; and, when a mount runs on that cache, its live transfers, rates and alerts.\n\n"
             "Options:\n") +
         FormatOptionTable(CacheToolOptions(false)) + "\nExit codes: 0 printed; 2 usage error.\n";
}

std::string VerifyHelp() {
  return std::string(
             "Usage: modelfs verify [ORG/NAME[@REV]] [--cache-dir DIR] [--format text|json]\n\n"
             "Re-hashes cached data without the network (every block's XXH3; complete files' SHA-256\n"
             "or git blob id) and drops what is bad, so it is fetched again. With ORG/NAME[@REV]\n"
             "(datasets/ORG/NAME for a dataset) only that repo's stored files.\n\n"
             "Options:\n") +
         FormatOptionTable(CacheToolOptions(false)) +
         "\nExit codes: 0 all good; 1 bad data found (and dropped), a blob could not be read, or\n"
         "ORG/NAME has no stored tree in the cache; 2 usage error.\n";
}

std::string GcHelp() {
  return std::string(
             "Usage: modelfs gc [--size SIZE] [--cache-dir DIR] [--format text|json]\n\n"
             "Removes blobs no stored tree references, then with --size evicts whole files (verified\n"
             "first, least recently used first) until the block data fits in SIZE. Run it while no\n"
             "mount uses the cache.\n\n"
             "Options:\n") +
         FormatOptionTable(CacheToolOptions(true)) + "\nExit codes: 0 done; 2 usage error.\n";
}

std::string Rate(double Bps) {
  char buf[32];
  snprintf(buf, sizeof buf, "%.1f MiB/s", Bps / 1048576.0);
  return buf;
}

// A status file older than this is from a mount that stopped (or hangs): the daemon rewrites it
// every second (tools/monitor.h), so 5 s tolerates a busy machine without showing stale numbers.
constexpr double kLiveStatusMaxAgeS = 5;

// The status of each mount running on this cache (<dir>/run/status-<pid>.json, named as in
// tools/status_file.h): files that are fresh and whose pid is alive, oldest mount first.
nlohmann::json LiveMounts(const std::string& dir) {
  nlohmann::json out = nlohmann::json::array();
  const std::string run = dir + "/run";
  DIR* d = opendir(run.c_str());
  if (d == nullptr) return out;
  std::vector<std::string> names;
  while (dirent* e = readdir(d))
    if (StatusFilePid(e->d_name) > 0) names.push_back(e->d_name);
  closedir(d);
  std::sort(names.begin(), names.end());
  const double now =
      std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
  for (const std::string& name : names) {
    std::string text;
    if (!ReadFile(run + "/" + name, &text)) continue;  // the daemon ended and removed it meanwhile
    nlohmann::json j = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
    // A torn or foreign file is skipped, never an exception.
    if (!j.is_object() || !j["pid"].is_number_integer() || !j["updated_unix"].is_number() ||
        !j["window"].is_object() || !j["transfers"].is_array() || !j["alerts"].is_array())
      continue;
    const double age = now - j["updated_unix"].get<double>();
    const pid_t pid = j["pid"].get<pid_t>();
    if (pid != StatusFilePid(name) || age > kLiveStatusMaxAgeS || (kill(pid, 0) != 0 && errno != EPERM)) continue;
    j["age_s"] = age;
    out.push_back(std::move(j));
  }
  return out;
}

// The text lines for a live mount: rates, alerts, then one line per transfer.
std::string LiveText(const nlohmann::json& m) {
  std::string out;
  const auto& w = m["window"];
  char line[512];
  snprintf(line, sizeof line,
           "mount running (pid %d) at %s: %s now, %s over the last %llds, %.1f%% of %llu mirror calls "
           "succeeded\n",
           m["pid"].get<int>(), m.value("mountpoint", "").c_str(), Rate(m.value("speed_Bps", 0.0)).c_str(),
           Rate(w.value("speed_Bps", 0.0)).c_str(), (long long)w.value("window_s", 0),
           100.0 * w.value("success_ratio", 1.0), (unsigned long long)w.value("attempts", 0));
  out += line;
  if (!m.value("metrics_listen", "").empty()) out += "metrics: http://" + m["metrics_listen"].get<std::string>() + "/metrics\n";
  for (const auto& a : m["alerts"]) {
    if (!a.value("active", false)) continue;
    snprintf(line, sizeof line, "ALERT %s (for %.0f s): %s\n", a.value("alert", "").c_str(), a.value("for_s", 0.0),
             a.value("message", "").c_str());
    out += line;
  }
  // FUSE error replies since the mount started, by op and errno (a lookup's ENOENT is ordinary).
  const auto& errs = m.value("fuse_errors", nlohmann::json::array());
  if (errs.is_array() && !errs.empty()) {
    std::string list;
    for (const auto& e : errs) {
      if (!list.empty()) list += ", ";
      list += e.value("op", "") + " " + e.value("errno", "") + " x" + std::to_string(e.value("count", 0ull));
    }
    out += "error replies (op errno x count): " + list + "\n";
  }
  // Several endpoints (a site cache and the mirrors behind it): which one served the file bytes.
  const auto& ms = m.value("mirrors", nlohmann::json::array());
  if (ms.is_array() && ms.size() > 1) {
    out += "endpoints (file bytes served, state):\n";
    for (const auto& e : ms) {
      std::string state = e.value("healthy", true) ? "healthy" : "down";
      if (e.value("bad_files", 0) > 0) state += ", bad for " + std::to_string(e.value("bad_files", 0)) + " file(s)";
      snprintf(line, sizeof line, "  %10s  %-21s  %s\n", Mib(e.value("read_bytes", 0ull)).c_str(),
               e.value("mirror", "").c_str(), state.c_str());
      out += line;
    }
  }
  const auto& ts = m["transfers"];
  if (ts.empty()) {
    out += "no transfers in the last 10 s\n";
    return out;
  }
  out += "transfers (bytes so far, speed, source mirror, file):\n";
  for (const auto& t : ts) {
    // Bytes count when a chunk read completes (fetch/ reports no progress inside one), so a slow
    // link shows what is requested meanwhile.
    const unsigned reads = t.value("reads_in_flight", 0u);
    std::string state = reads ? std::to_string(reads) + (reads == 1 ? " read" : " reads") + " in flight, " +
                                    Mib(t.value("bytes_in_flight", 0ull)) + " requested"
                              : "done";
    if (t.value("failed_reads", 0) > 0) state += ", " + std::to_string(t.value("failed_reads", 0)) + " failed";
    snprintf(line, sizeof line, "  %10s  %12s  %-21s  %s  (%s)\n", Mib(t.value("bytes", 0ull)).c_str(),
             Rate(t.value("speed_Bps", 0.0)).c_str(), t.value("mirror", "").c_str(), t.value("file", "").c_str(),
             state.c_str());
    out += line;
  }
  return out;
}

// What a cache tool's start needs: its name, what it takes besides the options, its help, and
// the usage line printed after an argument error.
struct CacheTool {
  const char* command;
  bool allow_repo, allow_size;
  std::string (*help)();
  const char* usage;
};

// --help (exit code 0), an argument error (2), or -1 with the arguments in *a: the start every
// cache tool shares.
int StartCacheTool(const CacheTool& t, const std::vector<std::string>& args, const Environment& env, CacheArgs* a,
                   std::string* out, std::string* err) {
  if (WantsHelp(args)) {
    *out += t.help();
    return 0;
  }
  if (!ParseCacheArgs(t.command, args, env, t.allow_repo, t.allow_size, a, err)) {
    *err += t.usage;
    return 2;
  }
  return -1;
}

}  // namespace

int StatusCommand(const std::vector<std::string>& args, const Environment& env, std::string* out,
                  std::string* err) {
  CacheArgs a;
  if (int rc = StartCacheTool({"modelfs status", false, false, StatusHelp, "Usage: modelfs status [--cache-dir DIR] [--format text|json]\n"}, args, env, &a, out, err); rc >= 0) return rc;
  auto blobs = ListCachedBlobs(a.dir);
  std::map<std::string, const CachedBlob*> by_key;
  uint64_t used = 0, verified_bytes = 0;
  for (const auto& b : blobs) {
    by_key[b.key] = &b;
    used += CachedBlobCharge(b);
    if (b.summary.verified) verified_bytes += CachedBlobCharge(b);
  }
  nlohmann::json j = {{"cache_dir", a.dir}, {"used_bytes", used}, {"verified_bytes", verified_bytes},
                      {"blobs", blobs.size()}};
  struct statvfs v;
  if (statvfs(a.dir.c_str(), &v) == 0) {
    j["fs_size_bytes"] = static_cast<uint64_t>(v.f_blocks) * v.f_frsize;
    j["fs_free_bytes"] = static_cast<uint64_t>(v.f_bavail) * v.f_frsize;
  }
  nlohmann::json repos = nlohmann::json::array();
  std::string text;
  for (const auto& t : ListStoredTrees(a.dir)) {
    nlohmann::json files = nlohmann::json::array();
    uint64_t total = 0, cached = 0;
    for (const auto& f : t.files) {
      auto it = by_key.find(f.ContentKey());
      uint64_t c = it == by_key.end() ? 0 : it->second->summary.present_bytes;
      bool ver = it != by_key.end() && it->second->summary.verified;
      files.push_back({{"path", f.path}, {"size", f.size}, {"cached_bytes", c}, {"verified", ver}});
      total += f.size;
      cached += c;
    }
    repos.push_back({{"repo", t.repo.Id()}, {"type", t.repo.type}, {"commit", t.commit},
                     {"revisions", t.revs}, {"size", total}, {"cached_bytes", cached},
                     {"files", files}});
  }
  j["repos"] = repos;
  nlohmann::json pins = nlohmann::json::array();
  for (const auto& p : ListPins(a.dir)) {
    uint64_t cached = 0;
    for (const auto& k : p.keys) {
      auto it = by_key.find(k);
      if (it != by_key.end()) cached += it->second->summary.present_bytes;
    }
    pins.push_back({{"repo", p.repo}, {"commit", p.commit}, {"files", p.keys.size()},
                    {"bytes", p.bytes}, {"cached_bytes", cached}});
  }
  j["pins"] = pins;
  // Mounts running on this cache: what they are doing now (tools/monitor.h writes it each second).
  nlohmann::json live = LiveMounts(a.dir);
  j["mounts"] = live;
  if (a.json) {
    // Names come from disk: never let a stray byte abort the dump.
    *out += j.dump(2, ' ', false, nlohmann::json::error_handler_t::replace) + "\n";
    return 0;
  }
  *out += "cache " + a.dir + ": " + Mib(used) + " of block data in " + std::to_string(blobs.size()) +
          " blobs (" + Mib(verified_bytes) + " verified)";
  if (j.contains("fs_size_bytes")) {
    *out += "; filesystem " + Mib(j["fs_size_bytes"]) + ", " + Mib(j["fs_free_bytes"]) + " free";
  }
  *out += "\n";
  for (const auto& m : live) *out += LiveText(m);
  for (const auto& p : pins) {
    *out += "pinned " + p["repo"].get<std::string>() + "@" + p["commit"].get<std::string>().substr(0, 12) +
            ": " + std::to_string(p["files"].get<size_t>()) + " files, " + Mib(p["cached_bytes"]) +
            " of " + Mib(p["bytes"]) + " cached\n";
  }
  for (const auto& r : repos) {
    std::string revs;
    for (const auto& rv : r["revisions"]) {
      const std::string name = rv.get<std::string>();
      if (!revs.empty()) revs += ',';
      revs += name.empty() ? "default branch" : name;
    }
    *out += r["repo"].get<std::string>() + "@" + r["commit"].get<std::string>().substr(0, 12) +
            (revs.empty() ? "" : " (" + revs + ")") + ": " + Mib(r["cached_bytes"]) + " of " +
            Mib(r["size"]) + " cached\n";
    for (const auto& f : r["files"]) {
      uint64_t size = f["size"], c = f["cached_bytes"];
      const char* state = f["verified"].get<bool>() ? "verified" : c == size ? "complete" : c ? "partial" : "-";
      char line[64];
      snprintf(line, sizeof line, "  %-9s %5.1f%%  ", state, size ? 100.0 * c / size : 100.0);
      *out += line + f["path"].get<std::string>() + "\n";
    }
  }
  return 0;
}

int VerifyCommand(const std::vector<std::string>& args, const Environment& env, std::string* out,
                  std::string* err) {
  CacheArgs a;
  if (int rc = StartCacheTool({"modelfs verify", true, false, VerifyHelp, "Usage: modelfs verify [ORG/NAME[@REV]] [--cache-dir DIR] [--format text|json]\n"}, args, env, &a, out, err); rc >= 0) return rc;
  std::set<std::string> only;  // content keys of REPO's files; empty = every blob
  if (!a.repo_arg.empty()) {
    std::string rev;
    auto repo = ParseRepoArg(a.repo_arg, &rev);
    if (!repo.ok()) {
      *err += repo.status().message() + "\n";
      return 2;
    }
    for (const auto& t : ListStoredTrees(a.dir)) {
      if (!(t.repo.Id() == repo->Id() && t.repo.type == repo->type)) continue;
      if (!rev.empty() && t.commit != rev &&
          std::find(t.revs.begin(), t.revs.end(), rev) == t.revs.end()) continue;
      for (const auto& f : t.files) only.insert(f.ContentKey());
    }
    if (only.empty()) {
      *err += "no stored tree for " + a.repo_arg + " in " + a.dir + "\n";
      return 1;
    }
  }
  nlohmann::json results = nlohmann::json::array();
  uint64_t checked = 0, bad = 0;
  for (const auto& b : ListCachedBlobs(a.dir)) {
    if (!only.empty() && !only.count(b.key)) continue;
    if (b.summary.present_blocks == 0) continue;
    auto r = VerifyCachedBlob(b);
    checked++;
    if (!r.ok()) {
      *err += b.key + ": " + r.status().ToString() + "\n";
      bad++;
      results.push_back({{"key", b.key}, {"error", r.status().ToString()}});
      continue;
    }
    bool is_bad = r->bad_blocks > 0 || (r->hash_checked && !r->hash_ok);
    if (is_bad) bad++;
    const char* state = r->hash_checked ? (r->hash_ok ? "verified" : "hash mismatch, dropped")
                                        : "partial";
    results.push_back({{"key", b.key}, {"bad_blocks", r->bad_blocks}, {"state", state},
                       {"bad", is_bad}});
    if (!a.json && (is_bad || r->hash_checked)) {
      *out += b.key + ": " + state +
              (r->bad_blocks ? " (" + std::to_string(r->bad_blocks) + " bad blocks dropped)" : "") + "\n";
    }
  }
  if (a.json) {
    *out += nlohmann::json({{"checked", checked}, {"bad", bad}, {"blobs", results}}).dump(2) + "\n";
  } else {
    *out += std::to_string(checked) + " blobs checked, " + std::to_string(bad) + " bad\n";
  }
  return bad ? 1 : 0;
}

int GcCommand(const std::vector<std::string>& args, const Environment& env, std::string* out,
              std::string* err) {
  CacheArgs a;
  if (int rc = StartCacheTool({"modelfs gc", false, true, GcHelp, "Usage: modelfs gc [--size SIZE] [--cache-dir DIR] [--format text|json]\n"}, args, env, &a, out, err); rc >= 0) return rc;
  uint64_t target = UINT64_MAX;
  if (!a.size.empty()) {
    auto s = ParseSize(a.size);
    if (!s.ok()) {
      *err += s.status().message() + "\n";
      return 2;
    }
    target = s.value();
  }
  std::set<std::string> referenced;
  for (const auto& t : ListStoredTrees(a.dir))
    for (const auto& f : t.files) referenced.insert(f.ContentKey());
  // Pinned repos (modelfs prefetch --pin) are never dropped, by gc as by the daemon's eviction.
  std::set<std::string> pinned;
  for (const auto& p : ListPins(a.dir)) pinned.insert(p.keys.begin(), p.keys.end());
  uint64_t pinned_kept = 0;
  auto blobs = ListCachedBlobs(a.dir);
  uint64_t used = 0, freed = 0, removed = 0, unreferenced = 0;
  std::vector<const CachedBlob*> keep;
  for (const auto& b : blobs) {
    if (!referenced.count(b.key) && !pinned.count(b.key)) {
      freed += RemoveCachedBlob(b);
      removed++;
      unreferenced++;
    } else {
      used += CachedBlobCharge(b);
      keep.push_back(&b);
    }
  }
  // Same order as the daemon's eviction: verified whole files first, then LRU.
  std::sort(keep.begin(), keep.end(), [](const CachedBlob* x, const CachedBlob* y) {
    return std::make_tuple(!x->summary.verified, x->last_use) <
           std::make_tuple(!y->summary.verified, y->last_use);
  });
  for (const CachedBlob* b : keep) {
    if (used <= target) break;
    if (pinned.count(b->key)) {
      pinned_kept++;
      continue;
    }
    uint64_t f = RemoveCachedBlob(*b);
    used -= f;
    freed += f;
    removed++;
  }
  if (a.json) {
    *out += nlohmann::json({{"removed_blobs", removed}, {"unreferenced_blobs", unreferenced},
                            {"freed_bytes", freed}, {"used_bytes", used},
                            {"pinned_blobs_kept", pinned_kept}})
                .dump(2) +
            "\n";
  } else {
    *out += "removed " + std::to_string(removed) + " blobs (" + std::to_string(unreferenced) +
            " unreferenced), freed " + Mib(freed) + "; " + Mib(used) + " of block data left" +
            (pinned_kept ? " (" + std::to_string(pinned_kept) + " pinned blobs kept)" : "") + "\n";
  }
  return 0;
}

namespace {
int Print(int rc, const std::string& out, const std::string& err) {
  fputs(out.c_str(), stdout);
  fputs(err.c_str(), stderr);
  return rc;
}
}  // namespace

int RunStatus(const std::vector<std::string>& args) {
  std::string out, err;
  int rc = StatusCommand(args, Environment::Process(), &out, &err);
  return Print(rc, out, err);
}
int RunVerify(const std::vector<std::string>& args) {
  std::string out, err;
  int rc = VerifyCommand(args, Environment::Process(), &out, &err);
  return Print(rc, out, err);
}
int RunGc(const std::vector<std::string>& args) {
  std::string out, err;
  int rc = GcCommand(args, Environment::Process(), &out, &err);
  return Print(rc, out, err);
}

}  // namespace modelfs::cli
