// Options for the HTTP layer. Built by tools/ from flags and environment; nothing in fetch/ reads
// argv or getenv.
#pragma once

#include <string>
#include <vector>

namespace modelfs {

struct FetchOptions {
  // Hub base URL ("http://127.0.0.1:8080" or "https://huggingface.co"), no trailing slash. Both the
  // /api/ JSON calls and /resolve/ downloads go here.
  std::string endpoint = "https://huggingface.co";
  // Bearer token; empty for anonymous. Sent only to the endpoint's own scheme://host:port, never to
  // a redirect target on another origin (the CDN), never logged.
  std::string token;
  std::string user_agent = "modelfs/0.1";
  // TCP+TLS connect timeout. 5 s: loopback and LAN mirrors connect in ms; a far mirror in < 1 s.
  long connect_timeout_ms = 5000;
  // Stall detector: a transfer that moves fewer than stall_min_bytes_per_s for stall_timeout_s
  // seconds is aborted and retried (CernVM-FS uses < 1 kB/s for 10 s as "dead").
  long stall_timeout_s = 10;
  long stall_min_bytes_per_s = 1024;
  // Hard ceiling for one request, so no FUSE worker can wait forever even on a trickling server
  // that stays above the stall rate. A 4 MiB chunk at 1 kB/s would take longer; such a server is
  // unusable anyway.
  long request_timeout_s = 120;
  // Transient failures (connect errors, resets, stalls, 5xx, 429) are retried this many times with
  // exponential backoff starting at retry_base_ms (plus jitter).
  int max_retries = 4;
  long retry_base_ms = 200;
  // Tree page size to ask for (0 = the server's default). Never assumed: pagination follows Link.
  int tree_page_limit = 0;

  // ---- Mirrors (fetch/mirror_set.h). `endpoint` stays the one endpoint of an HttpClient; the
  // MirrorSet builds one HttpClient per entry of `endpoints` (empty = just `endpoint`), each with
  // its own endpoint, and sends the token to each of them (they are all configured by the user)
  // but never to a CDN they redirect to.
  std::vector<std::string> endpoints;
  // A mirror that failed (network, stalls, 5xx after its retries) is left alone this long before
  // it is tried again, as CernVM-FS does with a failed proxy/server; so is a mirror for a file it
  // served wrong. 5 minutes by default. (A 429 is left alone for the time it asked instead.)
  long mirror_retry_after_s = 300;
  // How healthy mirrors share the reads (fetch/mirror_set.h):
  //  - kFastest: by expected time x calls in flight, so parallel ranges spread over every healthy
  //    mirror in proportion to its speed (equal mirrors: more bandwidth).
  //  - kOrdered: in the order given; a later one takes a call only when every earlier one is down
  //    (for the cool-down) or bad for that file. For a site cache listed first with the public
  //    mirrors behind it as fallbacks: its bytes cross the site's uplink once, for everyone.
  enum class EndpointPolicy { kFastest, kOrdered };
  EndpointPolicy endpoint_policy = EndpointPolicy::kFastest;
  // On a 429, wait as told and retry here (true), or give up at once so that the caller moves the
  // load elsewhere (false: what MirrorSet sets when it has other mirrors).
  bool wait_on_rate_limit = true;

  // ---- TLS. Verification is always on (libcurl's default, with the system CA store). ca_file,
  // if set, replaces the CA bundle (CURLOPT_CAINFO). tls_min_version is "1.2" (default) or "1.3".
  // Proxies come from libcurl's standard environment variables (http_proxy, https_proxy,
  // no_proxy, all_proxy); nothing here overrides them.
  std::string ca_file;
  std::string tls_min_version = "1.2";

  bool operator==(const FetchOptions&) const = default;  // tools/ checks its defaults against these
};

}  // namespace modelfs
