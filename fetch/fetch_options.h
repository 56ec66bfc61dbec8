// Options for the HTTP layer. Built by tools/ from flags and environment; nothing in fetch/ reads
// argv or getenv.
#pragma once

#include <string>

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
};

}  // namespace modelfs
