#include "tools/options.h"

#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <map>

#include "common/file_util.h"
#include "common/log.h"
#include "fs/model_fs.h"
#include "tools/config_file.h"

namespace modelfs::cli {
namespace {

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

// Stores a parsed value (converted to the field's type) or passes its error on.
template <typename T, typename F>
Status Set(Result<T> r, F* field) {
  if (!r.ok()) return r.status();
  *field = static_cast<F>(r.value());
  return Status::Ok();
}

Status SetSwitch(const std::string& v, bool* field) {
  *field = !v.empty();
  return Status::Ok();
}

// The built-in default of --cache-dir.
std::string DefaultCacheDir(const Environment& env) { return env.Home() + "/.cache/modelfs"; }

}  // namespace

std::vector<std::string> ConfigKeys() {
  std::vector<std::string> keys;
  for (const auto& o : MountOptionTable())
    if (o.value_name) keys.push_back(o.flag + 2);
  return keys;
}

const std::vector<OptionSpec>& MountOptionTable() {
  // A switch's apply gets "1" (on) or "" (off).
  static const std::vector<OptionSpec> kTable = {
      {.flag = "--endpoint", .env = "HF_ENDPOINT", .value_name = "URL", .default_text = "https://huggingface.co",
       .help = "Hub or mirror to read from (API calls and downloads). Repeat it for several mirrors: the "
               "fastest healthy one is used and a failing one is left for --mirror-retry seconds. Also "
               "$MODELFS_MIRRORS (a list, after HF_ENDPOINT) and 'endpoint =' lines in the config files; "
               "'modelfs config show' prints the result."},
      {.flag = "--token-file", .env = "HF_TOKEN_PATH", .value_name = "FILE", .default_text = "$HF_HOME/token",
       .help = "File holding the access token. $HF_TOKEN, if set, wins over any file. The token is sent "
               "only to the endpoint's host, never to a CDN it redirects to."},
      {.flag = "--cache-dir", .env = "MODELFS_CACHE", .value_name = "DIR", .default_text = "~/.cache/modelfs",
       .help = "Persistent block cache and stored hub metadata.",
       .apply = [](const std::string& v, MountConfig* c) {
         c->cache.dir = v;
         return Status::Ok();
       }},
      {.flag = "--cache-size", .env = "MODELFS_CACHE_SIZE", .value_name = "SIZE", .default_text = "20GiB",
       .help = "Most disk the cache directory takes (B, KiB, MiB, GiB, TiB; KB/MB/GB are decimal), or a "
               "percentage of the cache filesystem (25%): block data, index files, directories, stored "
               "metadata, and room for the status file and a log kept there. Space is reserved before a "
               "block is written, so it is never exceeded; least recently used files not in use are "
               "evicted first.",
       .apply = [](const std::string& v, MountConfig* c) -> Status {
         if (!v.empty() && v.back() == '%') {
           auto pct = ParsePercent(v);
           if (!pct.ok() || pct.value() <= 0) return Status::InvalidArgument("not a size or percentage: " + v);
           c->cache.max_fs_percent = pct.value();
           return Status::Ok();
         }
         auto size = ParseSize(v);
         if (!size.ok()) return size.status();
         c->cache.max_bytes = size.value();
         return Status::Ok();
       },
       .default_is_value = true},
      {.flag = "--cache-min-free", .env = "MODELFS_CACHE_MIN_FREE", .value_name = "PERCENT", .default_text = "10%",
       .help = "Never fill the cache filesystem above 100% minus this, whatever else writes to it; when "
               "no room can be made, reads are served without caching. 0% turns the check off.",
       .apply = [](const std::string& v, MountConfig* c) { return Set(ParsePercent(v), &c->cache.min_free_percent); },
       .default_is_value = true},
      {.flag = "--offline", .env = "HF_HUB_OFFLINE", .default_text = "off",
       .help = "Never touch the network: serve stored listings and cached bytes only; an uncached read "
               "fails at once with EIO (HF_HUB_OFFLINE=1 does the same).",
       .apply = [](const std::string& v, MountConfig* c) { return SetSwitch(v, &c->cache.offline); }},
      {.flag = "--verify-before-read", .env = "MODELFS_VERIFY_BEFORE_READ", .default_text = "off",
       .help = "Return no byte of a file before its whole-file SHA-256 matched: the first read of a file "
               "fills it completely (over many connections) and hashes it, then reads come from the "
               "verified cache. Without it, bytes are served as they arrive and hashed as they land; a "
               "reader of a whole file gets its last bytes only once the hash matched (else EIO), a "
               "mismatch drops the bad chunks and the kernel's pages and the file is fetched again "
               "(from another mirror when there are several), but a reader of a few tensors may have "
               "read unverified bytes. Needs room in the cache for every file being read at once.",
       .apply = [](const std::string& v, MountConfig* c) { return SetSwitch(v, &c->cache.verify_before_read); }},
      {.flag = "--fill-on-open", .env = "MODELFS_FILL_ON_OPEN", .default_text = "off",
       .help = "Opening a file larger than one chunk (4 MiB) starts fetching all of it in the background, "
               "over the fetch threads: loaders that read every tensor in their own order (mmap, random "
               "order) then find it cached at streaming speed. Fetches whole files for partial readers.",
       .apply = [](const std::string& v, MountConfig* c) { return SetSwitch(v, &c->cache.fill_on_open); }},
      {.flag = "--revision-ttl", .value_name = "DURATION", .default_text = "72h",
       .help = "How long a resolved branch or tag is trusted before the hub is asked again (s, m, h, d; "
               "0 = every mount). A commit id is never re-resolved.",
       .apply = [](const std::string& v, MountConfig* c) { return Set(ParseDuration(v), &c->cache.revision_ttl_s); },
       .default_is_value = true},
      {.flag = "--foreground", .short_flag = "-f", .default_text = "off",
       .help = "Stay in the foreground and log to stderr (containers, systemd Type=simple).",
       .apply = [](const std::string& v, MountConfig* c) { return SetSwitch(v, &c->mount.foreground); }},
      {.flag = "--log-file", .env = "MODELFS_LOG_FILE", .value_name = "FILE", .default_text = "<cache-dir>/modelfs.log",
       .help = "Where the daemon logs when not in the foreground.",
       .apply = [](const std::string& v, MountConfig* c) {
         c->log_file = v;
         return Status::Ok();
       }},
      {.flag = "--log-max-size", .env = "MODELFS_LOG_MAX_SIZE", .value_name = "SIZE", .default_text = "2MiB",
       .help = "Rotate the log file when it reaches this size: FILE becomes FILE.1 (the one before is "
               "deleted), so the log takes at most about twice this. A log inside the cache directory "
               "(the default) counts against --cache-size. 0 = never rotate.",
       .apply = [](const std::string& v, MountConfig* c) { return Set(ParseSize(v), &c->log_max_bytes); },
       .default_is_value = true},
      {.flag = "--log-level", .env = "MODELFS_LOG_LEVEL", .value_name = "LEVEL", .default_text = "info",
       .help = "debug, info, warn or error.",
       .apply = [](const std::string& v, MountConfig* c) -> Status {
         if (LogLevel l; !ParseLogLevel(v, &l)) return Status::InvalidArgument("not debug, info, warn or error: " + v);
         c->log_level = v;
         return Status::Ok();
       },
       .default_is_value = true},
      {.flag = "--log-format", .env = "MODELFS_LOG_FORMAT", .value_name = "FORMAT", .default_text = "text",
       .help = "Log lines as text, logfmt or json. Tokens and signed URL queries are always redacted.",
       .apply = [](const std::string& v, MountConfig* c) -> Status {
         if (LogFormat f; !ParseLogFormat(v, &f)) return Status::InvalidArgument("must be text, logfmt or json, not '" + v + "'");
         c->log_format = v;
         return Status::Ok();
       },
       .default_is_value = true},
      {.flag = "--metrics-listen", .env = "MODELFS_METRICS_LISTEN", .value_name = "ADDR:PORT", .default_text = "off",
       .help = "Serve GET /metrics (Prometheus text) and GET /status (JSON) on this address, e.g. "
               "127.0.0.1:9101 (port 0 = any free port; the bound one is logged and shown by 'modelfs "
               "status'). No authentication: a non-loopback address is allowed but logged as a warning.",
       .apply = [](const std::string& v, MountConfig* c) -> Status {
         std::string host;
         int port = 0;
         if (Status s = ParseListenAddress(v, &host, &port); !s.ok()) return s;
         c->monitor.listen = v;
         return Status::Ok();
       }},
      {.flag = "--metrics-file", .env = "MODELFS_METRICS_FILE", .value_name = "FILE", .default_text = "off",
       .help = "Write the metrics here every second, atomically (for node_exporter's textfile collector: "
               "a FILE ending in .prom in its directory).",
       .apply = [](const std::string& v, MountConfig* c) {
         c->monitor.metrics_file = v;
         return Status::Ok();
       }},
      {.flag = "--alert-window", .value_name = "DURATION", .default_text = "60s",
       .help = "Window over which the download success rate and average speed are computed for alerts "
               "(s, m, h).",
       .apply = [](const std::string& v, MountConfig* c) -> Status {
         auto w = ParseDuration(v);
         if (!w.ok()) return w.status();
         if (w.value() < 1) return Status::InvalidArgument("must be at least 1s");
         c->monitor.window_s = w.value();
         return Status::Ok();
       },
       .default_is_value = true},
      {.flag = "--alert-min-success-rate", .value_name = "PERCENT", .default_text = "90%",
       .help = "Log a warning and set modelfs_alert_active{alert=\"low_success_rate\"} while fewer than "
               "this share of mirror calls succeed over the window (retried attempts count as failures; "
               "needs 10 calls in the window). 0% = off.",
       .apply = [](const std::string& v, MountConfig* c) { return Set(ParsePercent(v), &c->monitor.min_success_percent); },
       .default_is_value = true},
      {.flag = "--alert-max-bandwidth", .value_name = "RATE", .default_text = "0",
       .help = "Log a warning and set modelfs_alert_active{alert=\"high_bandwidth\"} while the download "
               "speed averaged over the window is above this (e.g. 100MB/s, 1GiB/s). 0 = off.",
       .apply = [](const std::string& v, MountConfig* c) { return Set(ParseRate(v), &c->monitor.max_bandwidth_Bps); },
       .default_is_value = true},
      {.flag = "--threads", .value_name = "N", .default_text = "64",
       .help = "FUSE worker threads; enough that reads waiting on the network do not starve cached ones.",
       .apply = [](const std::string& v, MountConfig* c) { return Set(ParseCount(v, 1024), &c->mount.max_threads); },
       .default_is_value = true},
      {.flag = "--fetch-threads", .value_name = "N", .default_text = "16",
       .help = "Parallel range requests for prefetching (connections to the mirror).",
       .apply = [](const std::string& v, MountConfig* c) { return Set(ParseCount(v, 256), &c->cache.fetch_threads); },
       .default_is_value = true},
      {.flag = "--max-readahead", .value_name = "SIZE", .default_text = "8MiB",
       .help = "Kernel readahead per file (1MiB..64MiB). A read larger than this makes the kernel read "
               "up to twice this past its end (bytes a lazy loader wastes per tensor); an mmap fault "
               "reads this much around it. modelfs prefetches sequential readers itself.",
       .apply = [](const std::string& v, MountConfig* c) -> Status {
         auto ra = ParseSize(v);
         if (!ra.ok()) return ra.status();
         if (ra.value() < (1u << 20) || ra.value() > (64u << 20)) return Status::InvalidArgument("must be 1MiB..64MiB");
         c->mount.max_readahead = static_cast<unsigned>(ra.value());
         c->cache.kernel_readahead = ra.value();
         return Status::Ok();
       },
       .default_is_value = true},
      {.flag = "--memory-budget", .env = "MODELFS_MEMORY_BUDGET", .value_name = "SIZE", .default_text = "128MiB",
       .help = "Memory for data buffers, used and free. Reads: one per 16 MiB of it (4 to 64), each 6 MiB "
               "(a 1 MiB reply and a 1 MiB block buffer for a read copied through memory, and a 4 MiB chunk "
               "for a read that starts a fetch of its own). The rest: 3/4 for chunks in flight, 1/4 for chunks "
               "kept in memory when the cache cannot take them (4 MiB each; at least 4 and 2). The daemon's "
               "RSS is about this plus 35 MiB. Lower it on small edge boxes; a far link needs about 7 chunks "
               "in flight.",
       .apply = [](const std::string& v, MountConfig* c) -> Status {
         auto budget = ParseSize(v);
         if (!budget.ok()) return budget.status();
         const uint64_t reads = std::clamp<uint64_t>(budget.value() / 16 / (1u << 20), 4, 64);
         c->mount.reply_buffers = static_cast<unsigned>(reads);
         c->cache.max_network_reads = static_cast<unsigned>(reads);
         const uint64_t per_read = 2 * (1u << 20) + kChunkSize;
         const uint64_t chunks = (budget.value() - std::min(budget.value(), reads * per_read)) / kChunkSize;
         c->cache.max_inflight_chunks = static_cast<unsigned>(std::max<uint64_t>(4, chunks * 3 / 4));
         c->cache.max_spill_chunks = static_cast<unsigned>(std::max<uint64_t>(2, chunks / 4));
         return Status::Ok();
       },
       .default_is_value = true},
      {.flag = "--connect-timeout", .value_name = "SECONDS", .default_text = "5", .help = "TCP/TLS connect timeout.",
       .apply = [](const std::string& v, MountConfig* c) -> Status {
         auto s = ParseSeconds(v);
         if (!s.ok()) return s.status();
         c->fetch.connect_timeout_ms = s.value() * 1000;
         return Status::Ok();
       },
       .default_is_value = true},
      {.flag = "--stall-timeout", .value_name = "SECONDS", .default_text = "10",
       .help = "Abort and retry a transfer that moves under 1 KiB/s for this long.",
       .apply = [](const std::string& v, MountConfig* c) { return Set(ParseSeconds(v), &c->fetch.stall_timeout_s); },
       .default_is_value = true},
      {.flag = "--retries", .value_name = "N", .default_text = "4", .help = "Retries of a failed request (with backoff).",
       .apply = [](const std::string& v, MountConfig* c) -> Status {
         char* end = nullptr;
         const long n = strtol(v.c_str(), &end, 10);
         if (end == v.c_str() || *end != '\0' || n < 0 || n > 20) return Status::InvalidArgument("must be 0..20");
         c->fetch.max_retries = static_cast<int>(n);
         return Status::Ok();
       },
       .default_is_value = true},
      {.flag = "--mirror-retry", .value_name = "SECONDS", .default_text = "300",
       .help = "How long a failed mirror is left alone before it is tried again.",
       .apply = [](const std::string& v, MountConfig* c) { return Set(ParseSeconds(v), &c->fetch.mirror_retry_after_s); },
       .default_is_value = true},
      {.flag = "--endpoint-policy", .env = "MODELFS_ENDPOINT_POLICY", .value_name = "POLICY", .default_text = "fastest",
       .help = "How several --endpoint share the reads: 'fastest' spreads them over every healthy one by "
               "speed; 'ordered' uses them in the order given, a later one only while the earlier ones "
               "are down or failed for a file (a site cache first, mirrors behind it: docs/site-cache.md).",
       .apply = [](const std::string& v, MountConfig* c) -> Status {
         if (v == "ordered") {
           c->fetch.endpoint_policy = FetchOptions::EndpointPolicy::kOrdered;
         } else if (v == "fastest") {
           c->fetch.endpoint_policy = FetchOptions::EndpointPolicy::kFastest;
         } else {
           return Status::InvalidArgument("must be 'fastest' or 'ordered', not '" + v + "'");
         }
         return Status::Ok();
       },
       .default_is_value = true},
      {.flag = "--ca-file", .env = "MODELFS_CA_FILE", .value_name = "FILE", .default_text = "system CA store",
       .help = "CA bundle to verify TLS servers with (verification is always on).",
       .apply = [](const std::string& v, MountConfig* c) -> Status {
         if (access(v.c_str(), R_OK) != 0) return Status::InvalidArgument("cannot read CA file " + v);
         c->fetch.ca_file = v;
         return Status::Ok();
       }},
      {.flag = "--tls-min-version", .value_name = "VERSION", .default_text = "1.2",
       .help = "Oldest TLS version accepted: 1.2 or 1.3.",
       .apply = [](const std::string& v, MountConfig* c) -> Status {
         if (v != "1.2" && v != "1.3") return Status::InvalidArgument("must be 1.2 or 1.3");
         c->fetch.tls_min_version = v;
         return Status::Ok();
       },
       .default_is_value = true},
      {.flag = "--allow-other", .default_text = "off",
       .help = "Let other users see the mount (needs user_allow_other in /etc/fuse.conf for non-root).",
       .apply = [](const std::string& v, MountConfig* c) { return SetSwitch(v, &c->mount.allow_other); }},
      {.flag = "--debug", .short_flag = "-d", .default_text = "off", .help = "libfuse request tracing (implies -f).",
       .apply = [](const std::string& v, MountConfig* c) { return SetSwitch(v, &c->mount.debug); }},
      {.flag = "--hf-cache", .default_text = "off",
       .help = "Present the mount as a Hugging Face hub cache (models--ORG--NAME/refs, snapshots, blobs) "
               "for HF_HUB_CACHE=MOUNTPOINT HF_HUB_OFFLINE=1. Not with ORG/NAME.",
       .apply = [](const std::string& v, MountConfig* c) {
         c->fs.layout = v.empty() ? FsLayout::kPlain : FsLayout::kHfCache;
         return Status::Ok();
       }},
      {.flag = "--help", .short_flag = "-h", .default_text = "", .help = "Show this help."},
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

Result<std::string> CacheDirSetting(const Environment& env) {
  if (std::string dir = env.Get("MODELFS_CACHE"); !dir.empty()) return dir;
  Result<ConfigLayers> files = LoadConfigLayers(ConfigKeys(), env);
  if (!files.ok()) return files.status();
  if (const Sourced* v = files->Find("cache-dir")) return v->value;
  return DefaultCacheDir(env);
}

const OptionSpec* FindOption(const std::vector<OptionSpec>& table, const std::string& flag) {
  for (const auto& o : table)
    if (flag == o.flag || (o.short_flag && flag == o.short_flag)) return &o;
  return nullptr;
}

const std::string* ParsedArgs::Last(const std::string& flag) const {
  auto it = values.find(flag);
  return it == values.end() || it->second.empty() ? nullptr : &it->second.back();
}

Result<ParsedArgs> ParseArgs(const std::vector<std::string>& args, const std::vector<OptionSpec>& table,
                             const std::string& command) {
  ParsedArgs out;
  for (size_t i = 0; i < args.size(); i++) {
    std::string a = args[i];
    if (a.empty() || a[0] != '-' || a == "-") {
      out.positional.push_back(a);
      continue;
    }
    std::string value;
    bool has_value = false;
    if (size_t eq = a.find('='); a.rfind("--", 0) == 0 && eq != std::string::npos) {
      value = a.substr(eq + 1);
      a = a.substr(0, eq);
      has_value = true;
    }
    const OptionSpec* spec = FindOption(table, a);
    if (!spec) return Status::InvalidArgument("unknown option " + a + " (see " + command + " --help)");
    if (spec->value_name) {
      if (!has_value) {
        if (i + 1 >= args.size()) return Status::InvalidArgument(a + " needs a value");
        value = args[++i];
      }
      out.values[spec->flag].push_back(value);
    } else if (has_value) {
      return Status::InvalidArgument(a + " takes no value");
    } else {
      out.values[spec->flag].emplace_back("1");  // (constructed: assigning "1" trips GCC 12's -Wrestrict)
    }
  }
  return out;
}

std::vector<OptionSpec> CommandOptionTable(std::vector<OptionSpec> own, const std::vector<std::string>& forwarded) {
  for (const OptionSpec& o : MountOptionTable()) {
    if (std::find(forwarded.begin(), forwarded.end(), o.flag) == forwarded.end()) continue;
    own.push_back(o);
    if (std::string(o.flag) == "--log-level") own.back().default_text = "warn";
  }
  own.push_back(*FindOption(MountOptionTable(), "--help"));
  return own;
}

std::vector<std::string> ForwardedMountArgs(const ParsedArgs& args, const std::vector<std::string>& forwarded,
                                            const Environment& env) {
  std::vector<std::string> out;
  for (const std::string& f : forwarded) {
    auto it = args.values.find(f);
    if (it == args.values.end()) continue;
    const bool takes_value = FindOption(MountOptionTable(), f)->value_name != nullptr;
    for (const std::string& v : it->second) {
      out.push_back(f);
      if (takes_value) out.push_back(v);
    }
  }
  if (!args.Has("--log-level") && env.Get("MODELFS_LOG_LEVEL").empty()) out.insert(out.end(), {"--log-level", "warn"});
  return out;
}

std::optional<Sourced> ResolveOption(const OptionSpec& o, const ParsedArgs& args, const Environment& env,
                                     const ConfigLayers& files) {
  if (const std::string* v = args.Last(o.flag)) return Sourced{*v, o.flag};
  if (!o.value_name) {  // a switch: no config key; its variable says yes or is ignored
    if (o.env && env.GetBool(o.env)) return Sourced{"1", o.env};
    return Sourced{"", "default"};
  }
  if (o.env && !env.Get(o.env).empty()) return Sourced{env.Get(o.env), o.env};
  if (const Sourced* f = files.Find(o.flag + 2)) return *f;
  if (o.default_is_value) return Sourced{o.default_text, "default"};
  return std::nullopt;
}

Status ParseMount(const std::vector<std::string>& args, const Environment& env, MountConfig* cfg, bool* help) {
  *help = false;
  Result<ParsedArgs> parsed = ParseArgs(args, MountOptionTable(), "modelfs mount");
  if (!parsed.ok()) return parsed.status();
  const ParsedArgs& flags = parsed.value();
  if (flags.Has("--help")) {
    *help = true;
    return Status::Ok();
  }
  const std::vector<std::string>& positional = flags.positional;
  if (positional.size() < 1 || positional.size() > 2) {
    return Status::InvalidArgument("expected [ORG/NAME[@REV]] MOUNTPOINT (see modelfs mount --help)");
  }
  cfg->mount.mountpoint = positional.back();
  if (positional.size() == 2) {
    auto repo = ParseRepoArg(positional[0], &cfg->fs.single_rev);
    if (!repo.ok()) return repo.status();
    cfg->fs.single_repo = repo.value();
  }
  Result<ConfigLayers> files = LoadConfigLayers(ConfigKeys(), env);
  if (!files.ok()) return files.status();

  // Every option with an `apply`: its value from flag > variable > config file > default.
  for (const OptionSpec& o : MountOptionTable()) {
    if (!o.apply) continue;
    std::optional<Sourced> v = ResolveOption(o, flags, env, files.value());
    if (!v) continue;
    if (Status s = o.apply(v->value, cfg); !s.ok()) {
      const std::string from = v->origin == o.flag ? "" : " (from " + v->origin + ")";
      return Status::InvalidArgument(std::string(o.flag) + from + ": " + s.message());
    }
  }

  // Endpoints (mirrors): flags > HF_ENDPOINT + MODELFS_MIRRORS > config files > default.
  std::vector<std::string> flag_endpoints;
  if (auto it = flags.values.find("--endpoint"); it != flags.values.end()) flag_endpoints = it->second;
  Result<std::vector<Sourced>> eps = EffectiveEndpoints(files.value(), flag_endpoints, env);
  if (!eps.ok()) return eps.status();
  cfg->fetch.endpoints.clear();
  for (const auto& e : eps.value()) cfg->fetch.endpoints.push_back(e.value);
  cfg->fetch.endpoint = cfg->fetch.endpoints.front();

  // Token: $HF_TOKEN (or its legacy name) wins, then the token file chain, in huggingface_hub's order.
  std::string hf_home = env.Get("HF_HOME");
  if (hf_home.empty()) {
    std::string xdg = env.Get("XDG_CACHE_HOME");
    hf_home = (xdg.empty() ? env.Home() + "/.cache" : xdg) + "/huggingface";
  }
  std::string token = CleanToken(env.Get("HF_TOKEN"));
  if (token.empty()) token = CleanToken(env.Get("HUGGING_FACE_HUB_TOKEN"));
  if (token.empty()) {
    const OptionSpec& tf = *FindOption(MountOptionTable(), "--token-file");
    const std::optional<Sourced> chosen = ResolveOption(tf, flags, env, files.value());
    const std::string path = chosen ? chosen->value : hf_home + "/token";
    std::string raw;
    if (ReadFile(path, &raw)) {
      token = CleanToken(raw);
    } else if (flags.Has("--token-file")) {
      return Status::InvalidArgument("cannot read token file " + path);
    }
  }
  cfg->fetch.token = token;

  // Defaults computed from others, and checks across options.
  if (cfg->cache.dir.empty()) cfg->cache.dir = DefaultCacheDir(env);
  cfg->mount.foreground = cfg->mount.foreground || cfg->mount.debug;
  if (!cfg->mount.foreground && cfg->log_file.empty()) cfg->log_file = cfg->cache.dir + "/modelfs.log";
  // The quota covers the whole cache directory: the store keeps room for the files it does not
  // write itself (docs/ARCHITECTURE.md, "Quota and eviction").
  cfg->cache.reserved_bytes = kStatusDiskBound;
  if (!cfg->log_file.empty() && cfg->log_file.rfind(cfg->cache.dir + "/", 0) == 0) {
    if (cfg->log_max_bytes == 0 && (cfg->cache.max_bytes > 0 || cfg->cache.max_fs_percent > 0)) {
      return Status::InvalidArgument("--log-max-size 0 (a log that grows without bound) inside the cache "
                                     "directory cannot be held to --cache-size; give a size or a --log-file elsewhere");
    }
    cfg->cache.reserved_bytes += LogDiskBound(cfg->log_max_bytes);
  }
  if (cfg->fs.layout == FsLayout::kHfCache && cfg->fs.single_repo) {
    return Status::InvalidArgument("--hf-cache shows every repo; it takes no ORG/NAME");
  }
  cfg->mount.notify_socket = env.Get("NOTIFY_SOCKET");  // systemd Type=notify (sd_notify protocol)
  cfg->monitor.status_dir = cfg->cache.dir + "/run";
  cfg->monitor.mountpoint = cfg->mount.mountpoint;
  cfg->fs.uid = getuid();
  cfg->fs.gid = getgid();
  return Status::Ok();
}

}  // namespace modelfs::cli
