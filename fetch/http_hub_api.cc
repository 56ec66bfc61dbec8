#include "fetch/http_hub_api.h"

#include <optional>

#include "common/log.h"
#include "fetch/protocol.h"

namespace modelfs {
namespace {

bool IsRedirect(long s) { return s == 301 || s == 302 || s == 303 || s == 307 || s == 308; }

// Outcome of one attempt: a final answer, a final error, or a transient error worth retrying.
struct Attempt {
  Status status;
  bool retryable = false;
  std::optional<long> delay_ms;
};

}  // namespace

HttpHubApi::HttpHubApi(FetchOptions opts) : client_(std::make_shared<http::HttpClient>(std::move(opts))) {}

HttpHubApi::HttpHubApi(std::shared_ptr<http::HttpClient> client) : client_(std::move(client)) {}

Result<HttpHubApi::JsonAnswer> HttpHubApi::GetJson(const std::string& start_url, const std::string& what) {
  const FetchOptions& o = client_->options();
  Attempt last;
  for (int attempt = 0; attempt <= o.max_retries; ++attempt) {
    if (attempt > 0) {
      if (!o.wait_on_rate_limit && client_->RateLimitedUntil() > std::chrono::steady_clock::now())
        break;  // told to wait: the caller (MirrorSet) goes elsewhere instead
      client_->CountRetry();
      MODELFS_LOG(kInfo, "%s: retry %d after: %s", what.c_str(), attempt, last.status.ToString().c_str());
      client_->Backoff(attempt, last.delay_ms);
    }
    std::string url = start_url;
    last = Attempt{};
    bool done = false;
    for (int hop = 0; hop <= kMaxRedirects && !done; ++hop) {
      http::Request req;
      req.url = url;
      req.send_auth = protocol::SameOrigin(url, o.endpoint);
      http::StringSink sink(protocol::kMaxJsonBodyBytes);
      http::Response resp = client_->Perform(req, &sink);
      const bool token_sent = req.send_auth && client_->has_token();
      if (sink.truncated) {
        return Status::InvalidArgument(what + ": JSON answer larger than the limit");
      }
      if (!resp.transport_ok) {
        last = {Status::Unavailable(what + ": " + resp.error), true, std::nullopt};
        done = true;
        break;
      }
      if (IsRedirect(resp.status)) {
        const std::string* loc = resp.Find("location");
        if (!loc) return Status::InvalidArgument(what + ": redirect without Location");
        Result<std::string> next = protocol::ResolveLocation(url, *loc);
        if (!next.ok()) return Status::InvalidArgument(what + ": bad redirect: " + next.status().message());
        if (!protocol::SameOrigin(*next, o.endpoint))
          return Status::InvalidArgument(what + ": refusing cross-origin redirect to " +
                                         protocol::StripQuery(*next));
        MODELFS_LOG(kDebug, "%s: redirect to %s", what.c_str(), protocol::StripQuery(*next).c_str());
        url = std::move(next.value());
        continue;
      }
      if (resp.status == 200) {
        JsonAnswer a;
        a.body = std::move(sink.body);
        a.link = resp.Get("link");
        a.url = url;
        return a;
      }
      Status s = http::MapHubError(resp, token_sent, what);
      if (resp.status >= 200 && resp.status < 300)
        s = Status::InvalidArgument(what + ": unexpected HTTP " + std::to_string(resp.status));
      if (!http::IsRetryableStatus(resp.status)) {
        client_->CountFailure();
        return s;
      }
      last = {s, true,
              protocol::ParseRetryDelayMs(resp.Get("retry-after"), resp.Get("ratelimit"),
                                          http::HttpClient::kMaxBackoffMs)};
      done = true;
    }
    if (!done) return Status::InvalidArgument(what + ": too many redirects");
  }
  client_->CountFailure();
  MODELFS_LOG(kWarn, "%s: giving up: %s", what.c_str(), last.status.ToString().c_str());
  if (last.status.code() == Code::kUnavailable) return last.status;
  return Status::Unavailable(last.status.message());
}

Result<std::string> HttpHubApi::ResolveRevision(const RepoId& repo, const std::string& rev) {
  // blobs=true: the answer lists the commit's files with their sizes and hashes, so the ListTree
  // that follows a resolution costs no round trip (on a far mirror, 0.2 s of every cold lookup).
  std::string url = Endpoint() + "/api/" + repo.ApiType() + "/" + repo.Id();
  if (!rev.empty()) url += "/revision/" + protocol::QuoteRevision(rev);
  url += "?blobs=true";
  std::string what = "revision " + repo.Id() + "@" + (rev.empty() ? "<default>" : rev);
  Result<JsonAnswer> a = GetJson(url, what);
  if (!a.ok()) return a.status();
  Result<protocol::RevisionAnswer> r = protocol::ParseRevision(a->body);
  if (!r.ok()) {
    client_->CountFailure();
    return Status::InvalidArgument(what + ": " + r.status().message());
  }
  if (r->files) {
    protocol::TreeAccumulator acc(kMaxTreeEntries);
    Status s = acc.Add(std::move(*r->files));
    Result<std::vector<FileEntry>> files = s.ok() ? std::move(acc).Finish() : Result<std::vector<FileEntry>>(s);
    if (files.ok()) {
      std::lock_guard<std::mutex> l(listed_mu_);
      listed_.push_front(Listed{repo.ApiType() + "/" + repo.Id(), r->sha, std::move(files.value())});
      if (listed_.size() > kMaxListed) listed_.pop_back();
    } else {
      MODELFS_LOG(kDebug, "%s: siblings unusable as a listing (%s): /tree lists it", what.c_str(),
                  files.status().message().c_str());
    }
  }
  return std::move(r->sha);
}

Result<std::vector<FileEntry>> HttpHubApi::ListTree(const RepoId& repo, const std::string& commit) {
  if (!protocol::IsHex(commit, 40, /*lowercase_only=*/true))
    return Status::InvalidArgument("ListTree needs a 40-hex commit, got '" + commit + "'");
  std::string url = Endpoint() + "/api/" + repo.ApiType() + "/" + repo.Id() + "/tree/" + commit +
                    "?recursive=true&expand=false";
  const int limit = client_->options().tree_page_limit;
  if (limit > 0) url += "&limit=" + std::to_string(limit);
  {
    // The resolution that gave this commit listed its files already.
    std::lock_guard<std::mutex> l(listed_mu_);
    const std::string id = repo.ApiType() + "/" + repo.Id();
    for (auto it = listed_.begin(); it != listed_.end(); ++it) {
      if (it->repo == id && it->commit == commit) {
        std::vector<FileEntry> files = std::move(it->files);
        listed_.erase(it);
        return files;
      }
    }
  }
  const std::string what = "tree " + repo.Id() + "@" + commit;
  protocol::TreeAccumulator acc(kMaxTreeEntries);
  for (int page = 0;; ++page) {
    if (page >= kMaxTreePages) {
      client_->CountFailure();
      return Status::InvalidArgument(what + ": too many pages");
    }
    Result<JsonAnswer> a = GetJson(url, what);
    if (!a.ok()) return a.status();
    Result<std::vector<FileEntry>> entries = protocol::ParseTreePage(a->body);
    Status s = entries.ok() ? acc.Add(std::move(entries.value())) : entries.status();
    if (!s.ok()) {
      client_->CountFailure();
      return Status::InvalidArgument(what + " page " + std::to_string(page) + ": " + s.message());
    }
    std::optional<std::string> next = protocol::ParseLinkNext(a->link);
    if (!next) break;
    Result<std::string> abs = protocol::ResolveLocation(a->url, *next);
    if (!abs.ok()) {
      client_->CountFailure();
      return Status::InvalidArgument(what + ": bad Link next: " + abs.status().message());
    }
    std::string next_url = std::move(abs.value());
    if (!protocol::SameOrigin(next_url, Endpoint())) {
      // A mirror that forgot to rewrite the host in its pagination Link header: stay on our endpoint, so
      // the token never leaves it and the listing stays on the mirror.
      Result<std::string> rebased = protocol::RebaseOnto(next_url, Endpoint());
      if (!rebased.ok()) return rebased.status();
      MODELFS_LOG(kDebug, "%s: rebased Link next %s onto the endpoint", what.c_str(),
                  protocol::StripQuery(next_url).c_str());
      next_url = std::move(rebased.value());
    }
    if (next_url == url) {
      client_->CountFailure();
      return Status::InvalidArgument(what + ": Link next points at the same page");
    }
    url = std::move(next_url);
  }
  return std::move(acc).Finish();
}

}  // namespace modelfs
