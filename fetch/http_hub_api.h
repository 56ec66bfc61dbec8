// HttpHubApi: HubApi over the hub's JSON endpoints (revision and paginated tree APIs, with the
// hub's error answers mapped by http_client.h's MapHubError).
//
//   ResolveRevision: GET {EP}/api/{type}s/{repo}?blobs=true            (empty rev: default branch)
//                    GET {EP}/api/{type}s/{repo}/revision/{quote(rev)}?blobs=true -> "sha", and
//                    the commit's files from "siblings", kept for the ListTree that follows
//   ListTree:        the files the resolution of this commit listed (once), else
//                    GET {EP}/api/{type}s/{repo}/tree/{commit}?recursive=true&expand=false[&limit=N]
//                    then every Link rel="next" verbatim (rebased onto the endpoint if a mirror
//                    hands back another origin), validated and merged by protocol::TreeAccumulator.
//
// Redirects: same-origin 3xx (renamed repos, canonical ids) are followed with the token, at most
// kMaxRedirects hops; a cross-origin redirect on the API is refused (the token must not follow it
// and a mirror that bounces API calls elsewhere is misconfigured). Transient failures (network,
// 408/429/5xx) are retried max_retries times with backoff, then Unavailable.
#pragma once

#include <deque>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "fetch/fetch_options.h"
#include "fetch/http_client.h"
#include "fetch/hub_api.h"

namespace modelfs {

class HttpHubApi : public HubApi {
 public:
  explicit HttpHubApi(FetchOptions opts);
  // Shares connections and counters with other users of `client` (e.g. an HttpRangeSource).
  explicit HttpHubApi(std::shared_ptr<http::HttpClient> client);
  HttpHubApi(const HttpHubApi&) = delete;
  HttpHubApi& operator=(const HttpHubApi&) = delete;

  Result<std::string> ResolveRevision(const RepoId& repo, const std::string& rev) override;
  Result<std::vector<FileEntry>> ListTree(const RepoId& repo, const std::string& commit) override;

  const std::string& Endpoint() const { return client_->options().endpoint; }
  FetchStats Stats() const { return client_->Stats(); }
  const std::shared_ptr<http::HttpClient>& client() const { return client_; }

  // Same-origin redirect hops followed per request (huggingface_hub follows any number; 5 is more
  // than a rename plus a canonicalisation ever needs and stops loops).
  static constexpr int kMaxRedirects = 5;
  // Listing caps: a repo with more entries than this is refused rather than eating the heap;
  // the largest HF repos hold a few hundred thousand files.
  static constexpr size_t kMaxTreeEntries = 1000000;
  // Pages followed at most (an empty-page Link loop must end).
  static constexpr int kMaxTreePages = 100000;
  // Listings kept from resolutions until a ListTree takes them (a resolution whose listing is
  // cached already, e.g. a branch refresh, leaves one that is never taken).
  static constexpr size_t kMaxListed = 2;

 private:
  struct JsonAnswer {
    std::string body;
    std::string link;  // Link header, for pagination
    std::string url;   // URL that finally answered (after redirects)
  };
  // GET url (JSON), following same-origin redirects, retrying transient failures.
  Result<JsonAnswer> GetJson(const std::string& url, const std::string& what);

  std::shared_ptr<http::HttpClient> client_;

  struct Listed {
    std::string repo;  // ApiType()/Id()
    std::string commit;
    std::vector<FileEntry> files;
  };
  std::mutex listed_mu_;
  std::deque<Listed> listed_;  // newest first, at most kMaxListed; guarded by listed_mu_
};

}  // namespace modelfs
