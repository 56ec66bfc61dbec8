// The table of `modelfs mount`'s options (MountOptionTable): for each option its flag, variable,
// default, help and the function that applies a resolved value to MountConfig. Everything else
// comes from it: flag recognition and resolution (tools/options.cc), --help, docs/commands/, the
// config files' keys (ConfigKeys, below), `modelfs config show` and mount.modelfs's -o names.
// Adding an option is one entry here. The values' own syntax (sizes, durations, rates) is
// tools/option_values.h. Data only: no state, no locks.
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>

#include "common/log.h"
#include "fs/model_fs.h"
#include "tools/metrics_server.h"
#include "tools/option_values.h"
#include "tools/options.h"

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
      {.flag = "--memory-budget", .env = "MODELFS_MEMORY_BUDGET", .value_name = "SIZE", .default_text = "192MiB",
       .help = "Memory for data buffers, used and free. Reads: one per 16 MiB of it (4 to 64), each 6 MiB "
               "(a 1 MiB reply and a 1 MiB block buffer for a read copied through memory, and a 4 MiB chunk "
               "for a read that starts a fetch of its own). The rest: 3/4 for chunks in flight, 1/4 for chunks "
               "kept in memory when the cache cannot take them (4 MiB each; at least 4 and 2). The daemon's "
               "RSS is about this plus 35 MiB. Lower it on small edge boxes; a far link's random tensor loads "
               "want about 20 chunks in flight (the default gives 22).",
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

}  // namespace modelfs::cli
