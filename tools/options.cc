#include "tools/options.h"

#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <fstream>
#include <sstream>

#include "common/log.h"
#include "fs/model_fs.h"
#include "tools/config_file.h"

namespace modelfs::cli {
namespace {

std::string Env(const char* name) {
  const char* v = getenv(name);
  return v ? v : "";
}

std::string Home() {
  std::string h = Env("HOME");
  return h.empty() ? "/root" : h;
}

bool ReadSmallFile(const std::string& path, std::string* out) {
  std::ifstream in(path);
  if (!in) return false;
  std::ostringstream ss;
  ss << in.rdbuf();
  *out = ss.str();
  return true;
}

Result<long> ParseSeconds(const std::string& s) {
  char* end = nullptr;
  double v = strtod(s.c_str(), &end);
  if (end == s.c_str() || *end != '\0' || v <= 0 || v > 86400) {
    return Status::InvalidArgument("not a number of seconds: " + s);
  }
  return static_cast<long>(std::ceil(v));
}

Result<unsigned> ParseCount(const std::string& s, unsigned max) {
  char* end = nullptr;
  long v = strtol(s.c_str(), &end, 10);
  if (end == s.c_str() || *end != '\0' || v < 1 || v > static_cast<long>(max)) {
    return Status::InvalidArgument("not a count between 1 and " + std::to_string(max) + ": " + s);
  }
  return static_cast<unsigned>(v);
}

}  // namespace

std::vector<std::string> ConfigKeys() {
  std::vector<std::string> keys;
  for (const auto& o : MountOptionTable())
    if (o.value_name) keys.push_back(o.flag + 2);
  return keys;
}

const std::vector<OptionSpec>& MountOptionTable() {
  static const std::vector<OptionSpec> kTable = {
      {"--endpoint", nullptr, "HF_ENDPOINT", "URL", "https://huggingface.co",
       "Hub or mirror to read from (API calls and downloads). Repeat it for several mirrors: the "
       "fastest healthy one is used and a failing one is left for --mirror-retry seconds. Also "
       "$MODELFS_MIRRORS (a list, after HF_ENDPOINT) and 'endpoint =' lines in the config files; "
       "'modelfs config show' prints the result."},
      {"--token-file", nullptr, "HF_TOKEN_PATH", "FILE", "$HF_HOME/token",
       "File holding the access token. $HF_TOKEN, if set, wins over any file. The token is sent "
       "only to the endpoint's host, never to a CDN it redirects to."},
      {"--cache-dir", nullptr, "MODELFS_CACHE", "DIR", "~/.cache/modelfs",
       "Persistent block cache and stored hub metadata."},
      {"--cache-size", nullptr, "MODELFS_CACHE_SIZE", "SIZE", "20GiB",
       "Most block data the cache keeps (B, KiB, MiB, GiB, TiB; KB/MB/GB are decimal), or a "
       "percentage of the cache filesystem (25%). Space is reserved before a block is written, so "
       "it is never exceeded; least recently used files not in use are evicted first."},
      {"--cache-min-free", nullptr, "MODELFS_CACHE_MIN_FREE", "PERCENT", "10%",
       "Never fill the cache filesystem above 100% minus this, whatever else writes to it; when "
       "no room can be made, reads are served without caching. 0% turns the check off."},
      {"--offline", nullptr, "HF_HUB_OFFLINE", nullptr, "off",
       "Never touch the network: serve stored listings and cached bytes only; an uncached read "
       "fails at once with EIO (HF_HUB_OFFLINE=1 does the same)."},
      {"--verify-before-read", nullptr, "MODELFS_VERIFY_BEFORE_READ", nullptr, "off",
       "Return no byte of a file before its whole-file SHA-256 matched: the first read of a file "
       "fills it completely (over many connections) and hashes it, then reads come from the "
       "verified cache. Without it, bytes are served as they arrive and hashed once the file is "
       "complete; a mismatch then drops the bad chunks and the kernel's pages and the file is "
       "fetched again (from another mirror when there are several), but bytes already read were "
       "unverified. Needs room in the cache for every file being read at once."},
      {"--fill-on-open", nullptr, "MODELFS_FILL_ON_OPEN", nullptr, "off",
       "Opening a file larger than one chunk (4 MiB) starts fetching all of it in the background, "
       "over the fetch threads: loaders that read every tensor in their own order (mmap, random "
       "order) then find it cached at streaming speed. Fetches whole files for partial readers."},
      {"--revision-ttl", nullptr, nullptr, "DURATION", "72h",
       "How long a resolved branch or tag is trusted before the hub is asked again (s, m, h, d; "
       "0 = every mount). A commit id is never re-resolved."},
      {"--foreground", "-f", nullptr, nullptr, "off",
       "Stay in the foreground and log to stderr (containers, systemd Type=simple)."},
      {"--log-file", nullptr, "MODELFS_LOG_FILE", "FILE", "<cache-dir>/modelfs.log",
       "Where the daemon logs when not in the foreground."},
      {"--log-level", nullptr, "MODELFS_LOG_LEVEL", "LEVEL", "info", "debug, info, warn or error."},
      {"--log-format", nullptr, "MODELFS_LOG_FORMAT", "FORMAT", "text",
       "Log lines as text, logfmt or json. Tokens and signed URL queries are always redacted."},
      {"--metrics-listen", nullptr, "MODELFS_METRICS_LISTEN", "ADDR:PORT", "off",
       "Serve GET /metrics (Prometheus text) and GET /status (JSON) on this address, e.g. "
       "127.0.0.1:9101 (port 0 = any free port; the bound one is logged and shown by 'modelfs "
       "status'). No authentication: a non-loopback address is allowed but logged as a warning."},
      {"--metrics-file", nullptr, "MODELFS_METRICS_FILE", "FILE", "off",
       "Write the metrics here every second, atomically (for node_exporter's textfile collector: "
       "a FILE ending in .prom in its directory)."},
      {"--alert-window", nullptr, nullptr, "DURATION", "60s",
       "Window over which the download success rate and average speed are computed for alerts "
       "(s, m, h)."},
      {"--alert-min-success-rate", nullptr, nullptr, "PERCENT", "90%",
       "Log a warning and set modelfs_alert_active{alert=\"low_success_rate\"} while fewer than "
       "this share of mirror calls succeed over the window (retried attempts count as failures; "
       "needs 10 calls in the window). 0% = off."},
      {"--alert-max-bandwidth", nullptr, nullptr, "RATE", "0",
       "Log a warning and set modelfs_alert_active{alert=\"high_bandwidth\"} while the download "
       "speed averaged over the window is above this (e.g. 100MB/s, 1GiB/s). 0 = off."},
      {"--threads", nullptr, nullptr, "N", "64",
       "FUSE worker threads; enough that reads waiting on the network do not starve cached ones."},
      {"--fetch-threads", nullptr, nullptr, "N", "16",
       "Parallel range requests for prefetching (connections to the mirror)."},
      {"--memory-budget", nullptr, "MODELFS_MEMORY_BUDGET", "SIZE", "128MiB",
       "Memory for chunk buffers: 3/4 for chunks in flight, 1/4 for chunks kept in memory when "
       "the cache cannot take them (4 MiB each; at least 4 and 2). The daemon's RSS is about this "
       "plus 100 MiB. Lower it on small edge boxes; a far link needs about 7 chunks in flight."},
      {"--connect-timeout", nullptr, nullptr, "SECONDS", "5", "TCP/TLS connect timeout."},
      {"--stall-timeout", nullptr, nullptr, "SECONDS", "10",
       "Abort and retry a transfer that moves under 1 KiB/s for this long."},
      {"--retries", nullptr, nullptr, "N", "4", "Retries of a failed request (with backoff)."},
      {"--mirror-retry", nullptr, nullptr, "SECONDS", "300",
       "How long a failed mirror is left alone before it is tried again."},
      {"--endpoint-policy", nullptr, "MODELFS_ENDPOINT_POLICY", "POLICY", "fastest",
       "How several --endpoint share the reads: 'fastest' spreads them over every healthy one by "
       "speed; 'ordered' uses them in the order given, a later one only while the earlier ones "
       "are down or failed for a file (a site cache first, mirrors behind it: docs/site-cache.md)."},
      {"--ca-file", nullptr, "MODELFS_CA_FILE", "FILE", "system CA store",
       "CA bundle to verify TLS servers with (verification is always on)."},
      {"--tls-min-version", nullptr, nullptr, "VERSION", "1.2", "Oldest TLS version accepted: 1.2 or 1.3."},
      {"--allow-other", nullptr, nullptr, nullptr, "off",
       "Let other users see the mount (needs user_allow_other in /etc/fuse.conf for non-root)."},
      {"--debug", "-d", nullptr, nullptr, "off", "libfuse request tracing (implies -f)."},
      {"--hf-cache", nullptr, nullptr, nullptr, "off",
       "Present the mount as a Hugging Face hub cache (models--ORG--NAME/refs, snapshots, blobs) "
       "for HF_HUB_CACHE=MOUNTPOINT HF_HUB_OFFLINE=1. Not with ORG/NAME."},
      {"--help", "-h", nullptr, nullptr, "", "Show this help."},
  };
  return kTable;
}

std::string MainHelp() {
  return "modelfs: Hugging Face hub repos as a read-only, lazily fetched, verified filesystem.\n\n"
         "Usage:\n"
         "  modelfs mount [OPTIONS] [ORG/NAME[@REV]] MOUNTPOINT\n"
         "  modelfs unmount MOUNTPOINT\n"
         "  modelfs download ORG/NAME[@REV] --local-dir DIR [--include GLOB] [--exclude GLOB]\n"
         "  modelfs config show [--endpoint URL]...   (effective settings and their sources)\n"
         "  modelfs status [--cache-dir DIR] [--format json]       (cache use, per-file state)\n"
         "  modelfs verify [ORG/NAME[@REV]] [--format json]        (re-hash, drop bad data)\n"
         "  modelfs gc [--size SIZE] [--format json]               (drop unreferenced, shrink)\n"
         "  modelfs prefetch ORG/NAME[@REV] [--include GLOB] [--exclude GLOB] [--pin]\n"
         "  modelfs unpin ORG/NAME [--cache-dir DIR]\n"
         "  modelfs metrics --list                                 (every metric a mount exports)\n"
         "  modelfs --version\n\n"
         "Without ORG/NAME, MOUNTPOINT shows every repo on first lookup: MOUNTPOINT/ORG/NAME for the\n"
         "default branch, MOUNTPOINT/ORG/NAME@REV for a branch, tag or commit (write '/' in REV as\n"
         "%2F), MOUNTPOINT/datasets/ORG/NAME for datasets. Each repo directory stays pinned to the\n"
         "commit it resolved to for the life of the mount.\n\n"
         "Run 'modelfs COMMAND --help' for a command's options; docs/commands/ has a page per command.\n"
         "Exit codes: 0 success, 1 runtime failure, 2 usage error.\n";
}

std::string FormatOptionTable(const std::vector<OptionSpec>& table) {
  std::string out;
  for (const auto& o : table) {
    std::string left = "  ";
    if (o.short_flag) left += std::string(o.short_flag) + ", ";
    left += o.flag;
    if (o.value_name) left += std::string(" ") + o.value_name;
    out += left + "\n      " + o.help;
    std::string extra;
    if (o.default_text && *o.default_text) extra += std::string("default: ") + o.default_text;
    if (o.env) extra += std::string(extra.empty() ? "" : "; ") + "env: " + o.env;
    if (!extra.empty()) out += " [" + extra + "]";
    out += "\n";
  }
  return out;
}

std::string MountHelp() {
  std::string out =
      "Usage: modelfs mount [OPTIONS] [ORG/NAME[@REV]] MOUNTPOINT\n\n"
      "Mounts hub repos read-only at MOUNTPOINT and returns once the mount is live (unless -f).\n"
      "With ORG/NAME the mount root is that one repo. Unmount with 'modelfs unmount MOUNTPOINT'\n"
      "or 'fusermount3 -u MOUNTPOINT'.\n\nOptions:\n";
  out += FormatOptionTable(MountOptionTable());
  out += "\nThe token comes from $HF_TOKEN, else --token-file, else $HF_TOKEN_PATH, else\n"
         "$HF_HOME/token (HF_HOME defaults to ~/.cache/huggingface).\n"
         "\nExit codes: 0 the mount is live (with -f: unmounted cleanly); 1 the mount failed (repo,\n"
         "revision, mount point, cache directory, FUSE); 2 usage error.\n"
         "\nExamples:\n"
         "  modelfs mount /mnt/hf && ls /mnt/hf/ORG/NAME\n"
         "  modelfs mount --cache-size 100GiB ORG/NAME@v1.0 /mnt/model\n"
         "  modelfs mount --hf-cache /mnt/hf   # then HF_HUB_CACHE=/mnt/hf HF_HUB_OFFLINE=1\n";
  return out;
}

Result<double> ParsePercent(const std::string& text) {
  char* end = nullptr;
  double v = strtod(text.c_str(), &end);
  if (end == text.c_str() || std::string(end) != "%" || !std::isfinite(v) || v < 0 || v > 100) {
    return Status::InvalidArgument("not a percentage between 0% and 100%: '" + text + "'");
  }
  return v;
}

Result<int64_t> ParseDuration(const std::string& text) {
  char* end = nullptr;
  double v = strtod(text.c_str(), &end);
  std::string unit(end ? end : "");
  double mult = unit.empty() || unit == "s" ? 1 : unit == "m" ? 60 : unit == "h" ? 3600
              : unit == "d" ? 86400 : -1;
  if (end == text.c_str() || mult < 0 || !std::isfinite(v) || v < 0 || v * mult > 1e10) {
    return Status::InvalidArgument("not a duration: '" + text + "' (e.g. 72h, 30m, 0)");
  }
  return static_cast<int64_t>(v * mult);
}

Result<uint64_t> ParseRate(const std::string& text) {
  std::string t = text;
  if (t.size() > 2 && t.compare(t.size() - 2, 2, "/s") == 0) t.resize(t.size() - 2);
  auto v = ParseSize(t);
  if (!v.ok()) return Status::InvalidArgument("not a rate: '" + text + "' (e.g. 100MB/s, 1GiB/s, 0)");
  return v;
}

Result<uint64_t> ParseSize(const std::string& text) {
  char* end = nullptr;
  double v = strtod(text.c_str(), &end);
  if (end == text.c_str() || v < 0 || !std::isfinite(v)) {
    return Status::InvalidArgument("not a size: '" + text + "' (try 20GiB)");
  }
  std::string unit(end);
  double mult;
  if (unit.empty() || unit == "B") mult = 1;
  else if (unit == "K" || unit == "KiB") mult = 1024.0;
  else if (unit == "M" || unit == "MiB") mult = 1024.0 * 1024;
  else if (unit == "G" || unit == "GiB") mult = 1024.0 * 1024 * 1024;
  else if (unit == "T" || unit == "TiB") mult = 1024.0 * 1024 * 1024 * 1024;
  else if (unit == "KB" || unit == "kB") mult = 1e3;
  else if (unit == "MB") mult = 1e6;
  else if (unit == "GB") mult = 1e9;
  else if (unit == "TB") mult = 1e12;
  else return Status::InvalidArgument("unknown size unit in '" + text + "' (B, KiB, MiB, GiB, TiB, KB, MB, GB, TB)");
  double bytes = v * mult;
  if (bytes > 9.0e18) return Status::InvalidArgument("size too large: " + text);
  return static_cast<uint64_t>(bytes);
}

Result<RepoId> ParseRepoArg(const std::string& text, std::string* rev) {
  std::string s = text;
  RepoId repo;
  rev->clear();
  size_t at = s.find('@');
  if (at != std::string::npos) {
    *rev = s.substr(at + 1);
    s = s.substr(0, at);
    if (rev->empty()) return Status::InvalidArgument("empty revision in '" + text + "'");
  }
  if (s.rfind("datasets/", 0) == 0) {
    repo.type = "dataset";
    s = s.substr(9);
  } else if (s.rfind("models/", 0) == 0) {
    s = s.substr(7);
  }
  size_t slash = s.find('/');
  if (slash == std::string::npos || s.find('/', slash + 1) != std::string::npos) {
    return Status::InvalidArgument("repo must be ORG/NAME[@REV], got '" + text + "'");
  }
  repo.ns = s.substr(0, slash);
  repo.name = s.substr(slash + 1);
  if (!ModelFs::IsValidHubName(repo.ns) || !ModelFs::IsValidHubName(repo.name)) {
    return Status::InvalidArgument("not a valid repo id: '" + text + "'");
  }
  return repo;
}

std::string CleanToken(const std::string& raw) {
  std::string t;
  for (char c : raw)
    if (c != '\r' && c != '\n') t.push_back(c);
  size_t a = t.find_first_not_of(" \t");
  if (a == std::string::npos) return "";
  size_t b = t.find_last_not_of(" \t");
  return t.substr(a, b - a + 1);
}

Status ParseMount(const std::vector<std::string>& args, MountConfig* cfg, bool* help) {
  *help = false;
  std::map<std::string, std::string> vals;
  std::vector<std::string> positional;
  std::vector<std::string> flag_endpoints;  // --endpoint may be repeated (mirrors)
  const auto& table = MountOptionTable();
  for (size_t i = 0; i < args.size(); i++) {
    std::string a = args[i];
    if (a.empty() || a[0] != '-' || a == "-") {
      positional.push_back(a);
      continue;
    }
    std::string value;
    bool has_value = false;
    size_t eq = a.find('=');
    if (a.rfind("--", 0) == 0 && eq != std::string::npos) {
      value = a.substr(eq + 1);
      a = a.substr(0, eq);
      has_value = true;
    }
    const OptionSpec* spec = nullptr;
    for (const auto& o : table)
      if (a == o.flag || (o.short_flag && a == o.short_flag)) spec = &o;
    if (!spec) return Status::InvalidArgument("unknown option " + a + " (see modelfs mount --help)");
    if (spec->value_name) {
      if (!has_value) {
        if (i + 1 >= args.size()) return Status::InvalidArgument(a + " needs a value");
        value = args[++i];
      }
      vals[spec->flag] = value;
      if (std::string(spec->flag) == "--endpoint") flag_endpoints.push_back(value);
    } else {
      if (has_value) return Status::InvalidArgument(a + " takes no value");
      vals[spec->flag] = "1";
    }
  }
  if (vals.count("--help")) {
    *help = true;
    return Status::Ok();
  }
  // Config files (tools/config_file.h) sit below the environment: an option without a variable
  // takes the file's value unless flagged; one with a variable consults it in `get`.
  Result<ConfigLayers> files = LoadConfigLayers(ConfigKeys());
  if (!files.ok()) return files.status();
  for (const auto& o : table) {
    const Sourced* v = o.value_name ? files->Find(o.flag + 2) : nullptr;
    if (v && !o.env) vals.emplace(o.flag, v->value);
  }
  // A flag wins over its environment variable, which wins over the config files.
  auto get = [&](const char* flag, const char* env, const std::string& dflt) {
    auto it = vals.find(flag);
    if (it != vals.end()) return it->second;
    if (env && !Env(env).empty()) return Env(env);
    if (const Sourced* v = files->Find(flag + 2)) return v->value;
    return dflt;
  };

  if (positional.size() < 1 || positional.size() > 2) {
    return Status::InvalidArgument("expected [ORG/NAME[@REV]] MOUNTPOINT (see modelfs mount --help)");
  }
  cfg->mount.mountpoint = positional.back();
  if (positional.size() == 2) {
    auto repo = ParseRepoArg(positional[0], &cfg->fs.single_rev);
    if (!repo.ok()) return repo.status();
    cfg->fs.single_repo = repo.value();
  }

  // Endpoints (mirrors): flags > HF_ENDPOINT + MODELFS_MIRRORS > config files > default.
  Result<std::vector<Sourced>> eps = EffectiveEndpoints(files.value(), flag_endpoints);
  if (!eps.ok()) return eps.status();
  cfg->fetch.endpoints.clear();
  for (const auto& e : eps.value()) cfg->fetch.endpoints.push_back(e.value);
  cfg->fetch.endpoint = cfg->fetch.endpoints.front();

  // Token: $HF_TOKEN (or its legacy name) wins, then the token file chain (hub-protocol.md §1).
  std::string hf_home = Env("HF_HOME");
  if (hf_home.empty()) {
    std::string xdg = Env("XDG_CACHE_HOME");
    hf_home = (xdg.empty() ? Home() + "/.cache" : xdg) + "/huggingface";
  }
  std::string token = CleanToken(Env("HF_TOKEN"));
  if (token.empty()) token = CleanToken(Env("HUGGING_FACE_HUB_TOKEN"));
  if (token.empty()) {
    std::string path = get("--token-file", "HF_TOKEN_PATH", hf_home + "/token");
    std::string raw;
    if (ReadSmallFile(path, &raw)) {
      token = CleanToken(raw);
    } else if (vals.count("--token-file")) {
      return Status::InvalidArgument("cannot read token file " + path);
    }
  }
  cfg->fetch.token = token;

  // Cache.
  cfg->cache.dir = get("--cache-dir", "MODELFS_CACHE", Home() + "/.cache/modelfs");
  std::string size_text = get("--cache-size", "MODELFS_CACHE_SIZE", "20GiB");
  if (!size_text.empty() && size_text.back() == '%') {
    auto pct = ParsePercent(size_text);
    if (!pct.ok() || pct.value() <= 0) return Status::InvalidArgument("--cache-size: not a size or percentage: " + size_text);
    cfg->cache.max_fs_percent = pct.value();
  } else {
    auto size = ParseSize(size_text);
    if (!size.ok()) return size.status();
    cfg->cache.max_bytes = size.value();
  }
  auto min_free = ParsePercent(get("--cache-min-free", "MODELFS_CACHE_MIN_FREE", "10%"));
  if (!min_free.ok()) return min_free.status();
  cfg->cache.min_free_percent = min_free.value();
  // HF_HUB_OFFLINE follows huggingface_hub: 1/true/yes/on mean offline.
  std::string off_env = Env("HF_HUB_OFFLINE");
  for (auto& ch : off_env) ch = static_cast<char>(tolower(static_cast<unsigned char>(ch)));
  cfg->cache.offline = vals.count("--offline") > 0 || off_env == "1" || off_env == "true" ||
                       off_env == "yes" || off_env == "on";
  std::string vbr_env = Env("MODELFS_VERIFY_BEFORE_READ");
  cfg->cache.verify_before_read = vals.count("--verify-before-read") > 0 ||
                                  vbr_env == "1" || vbr_env == "true" || vbr_env == "yes";
  std::string foo_env = Env("MODELFS_FILL_ON_OPEN");
  cfg->cache.fill_on_open = vals.count("--fill-on-open") > 0 || foo_env == "1" || foo_env == "true" ||
                            foo_env == "yes";
  auto ttl = ParseDuration(get("--revision-ttl", nullptr, "72h"));
  if (!ttl.ok()) return ttl.status();
  cfg->cache.revision_ttl_s = ttl.value();

  // Threads and timeouts.
  if (vals.count("--threads")) {
    auto n = ParseCount(vals["--threads"], 1024);
    if (!n.ok()) return n.status();
    cfg->mount.max_threads = n.value();
  }
  if (vals.count("--fetch-threads")) {
    auto n = ParseCount(vals["--fetch-threads"], 256);
    if (!n.ok()) return n.status();
    cfg->cache.fetch_threads = n.value();
  }
  {
    auto budget = ParseSize(get("--memory-budget", "MODELFS_MEMORY_BUDGET", "128MiB"));
    if (!budget.ok()) return budget.status();
    uint64_t chunks = budget.value() / kChunkSize;
    cfg->cache.max_inflight_chunks = static_cast<unsigned>(std::max<uint64_t>(4, chunks * 3 / 4));
    cfg->cache.max_spill_chunks = static_cast<unsigned>(std::max<uint64_t>(2, chunks / 4));
  }
  if (vals.count("--connect-timeout")) {
    auto s = ParseSeconds(vals["--connect-timeout"]);
    if (!s.ok()) return s.status();
    cfg->fetch.connect_timeout_ms = s.value() * 1000;
  }
  if (vals.count("--stall-timeout")) {
    auto s = ParseSeconds(vals["--stall-timeout"]);
    if (!s.ok()) return s.status();
    cfg->fetch.stall_timeout_s = s.value();
  }
  if (vals.count("--retries")) {
    char* end = nullptr;
    long n = strtol(vals["--retries"].c_str(), &end, 10);
    if (*end != '\0' || n < 0 || n > 20) return Status::InvalidArgument("--retries must be 0..20");
    cfg->fetch.max_retries = static_cast<int>(n);
  }
  if (vals.count("--mirror-retry")) {
    auto s = ParseSeconds(vals["--mirror-retry"]);
    if (!s.ok()) return s.status();
    cfg->fetch.mirror_retry_after_s = s.value();
  }
  const std::string policy = get("--endpoint-policy", "MODELFS_ENDPOINT_POLICY", "fastest");
  if (policy == "ordered") {
    cfg->fetch.endpoint_policy = FetchOptions::EndpointPolicy::kOrdered;
  } else if (policy != "fastest") {
    return Status::InvalidArgument("--endpoint-policy must be 'fastest' or 'ordered', not '" + policy + "'");
  }
  cfg->fetch.ca_file = get("--ca-file", "MODELFS_CA_FILE", "");
  if (!cfg->fetch.ca_file.empty() && access(cfg->fetch.ca_file.c_str(), R_OK) != 0)
    return Status::InvalidArgument("cannot read CA file " + cfg->fetch.ca_file);
  cfg->fetch.tls_min_version = get("--tls-min-version", nullptr, "1.2");
  if (cfg->fetch.tls_min_version != "1.2" && cfg->fetch.tls_min_version != "1.3")
    return Status::InvalidArgument("--tls-min-version must be 1.2 or 1.3");

  cfg->mount.debug = vals.count("--debug") > 0;
  cfg->mount.foreground = vals.count("--foreground") > 0 || cfg->mount.debug;
  cfg->mount.allow_other = vals.count("--allow-other") > 0;
  cfg->mount.notify_socket = Env("NOTIFY_SOCKET");  // systemd Type=notify (sd_notify protocol)
  if (vals.count("--hf-cache")) {
    if (cfg->fs.single_repo) {
      return Status::InvalidArgument("--hf-cache shows every repo; it takes no ORG/NAME");
    }
    cfg->fs.layout = FsLayout::kHfCache;
  }
  cfg->log_level = get("--log-level", "MODELFS_LOG_LEVEL", "info");
  cfg->log_format = get("--log-format", "MODELFS_LOG_FORMAT", "text");
  if (LogFormat f; !ParseLogFormat(cfg->log_format, &f)) {
    return Status::InvalidArgument("--log-format must be text, logfmt or json, not '" +
                                   cfg->log_format + "'");
  }
  cfg->log_file = get("--log-file", "MODELFS_LOG_FILE", "");
  if (!cfg->mount.foreground && cfg->log_file.empty()) cfg->log_file = cfg->cache.dir + "/modelfs.log";
  // Monitor (tools/monitor.h).
  cfg->monitor.listen = get("--metrics-listen", "MODELFS_METRICS_LISTEN", "");
  if (!cfg->monitor.listen.empty()) {
    std::string host;
    int port = 0;
    Status ls = ParseListenAddress(cfg->monitor.listen, &host, &port);
    if (!ls.ok()) return Status::InvalidArgument("--metrics-listen: " + ls.message());
  }
  cfg->monitor.metrics_file = get("--metrics-file", "MODELFS_METRICS_FILE", "");
  auto window = ParseDuration(get("--alert-window", nullptr, "60s"));
  if (!window.ok()) return window.status();
  if (window.value() < 1) return Status::InvalidArgument("--alert-window must be at least 1s");
  cfg->monitor.window_s = window.value();
  auto min_rate = ParsePercent(get("--alert-min-success-rate", nullptr, "90%"));
  if (!min_rate.ok()) return Status::InvalidArgument("--alert-min-success-rate: " + min_rate.status().message());
  cfg->monitor.min_success_percent = min_rate.value();
  auto max_bw = ParseRate(get("--alert-max-bandwidth", nullptr, "0"));
  if (!max_bw.ok()) return Status::InvalidArgument("--alert-max-bandwidth: " + max_bw.status().message());
  cfg->monitor.max_bandwidth_Bps = max_bw.value();
  cfg->monitor.status_dir = cfg->cache.dir + "/run";
  cfg->monitor.mountpoint = cfg->mount.mountpoint;
  cfg->fs.uid = getuid();
  cfg->fs.gid = getgid();
  return Status::Ok();
}

}  // namespace modelfs::cli
