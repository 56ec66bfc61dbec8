#include "fetch/http_range_source.h"

#include <algorithm>
#include <cstring>
#include <ctime>
#include <vector>

#include "common/log.h"
#include "fetch/protocol.h"

namespace modelfs {

struct HttpRangeSource::Attempt {
  enum Kind { kOk, kFinal, kRetry, kReresolve };
  Kind kind = kOk;
  Status status;
  std::optional<long> delay_ms;  // server-requested wait before retrying

  static Attempt Ok() { return {}; }
  static Attempt Final(Status s) { return {kFinal, std::move(s), std::nullopt}; }
  static Attempt Retry(Status s, std::optional<long> d = std::nullopt) { return {kRetry, std::move(s), d}; }
  static Attempt Reresolve(Status s) { return {kReresolve, std::move(s), std::nullopt}; }
};

namespace {

bool IsRedirect(long s) { return s == 301 || s == 302 || s == 303 || s == 307 || s == 308; }

std::string CacheKey(const BlobRef& b) {
  // '\n' cannot occur in any part (paths are validated, commits are hex).
  return b.repo.type + "\n" + b.repo.Id() + "\n" + b.commit + "\n" + b.path;
}

std::string Label(const BlobRef& b) { return b.repo.Id() + "@" + b.commit.substr(0, 12) + ":" + b.path; }

// Receives a ranged GET's body straight into the caller's buffer and checks it on the way.
class RangeSink : public http::BodySink {
 public:
  // `progress`, if set, is told the count of bytes at the start of buf that are in place (they
  // arrive in order, so the count is contiguous).
  RangeSink(uint64_t offset, size_t len, uint64_t blob_size, char* buf,
            const RangeSource::Progress* progress)
      : offset_(offset), len_(len), size_(blob_size), buf_(buf), progress_(progress) {}

  bool OnHeaders(long status, const std::vector<http::Header>& headers) override {
    status_ = status;
    const std::string* cl = nullptr;
    const std::string* cr = nullptr;
    for (auto it = headers.rbegin(); it != headers.rend(); ++it) {
      if (!cl && it->name == "content-length") cl = &it->value;
      if (!cr && it->name == "content-range") cr = &it->value;
    }
    if (cl) {
      char* end = nullptr;
      errno = 0;
      unsigned long long v = strtoull(cl->c_str(), &end, 10);
      if (cl->empty() || *end != '\0' || errno != 0 || (*cl)[0] == '-') return Fail("bad Content-Length");
      content_length_ = v;
    }
    if (headers_have_encoding(headers)) return Fail("Content-Encoding on a ranged read");
    if (status == 206) {
      if (!cr) return Fail("206 without Content-Range");
      Result<protocol::ContentRange> r = protocol::ParseContentRange(*cr);
      if (!r.ok()) return Fail("malformed Content-Range '" + cr->substr(0, 80) + "'");
      protocol::ContentRange want{offset_, offset_ + len_ - 1, size_};
      if (!(r.value() == want)) return Fail("Content-Range '" + *cr + "' does not match the request");
      if (content_length_ && *content_length_ != len_) return Fail("Content-Length does not match range");
    } else if (status == 200) {
      if (content_length_ && *content_length_ != size_)
        return Fail("200 with a length other than the blob size");
    }
    return true;
  }

  bool OnData(const char* data, size_t n) override {
    if (status_ == 206) {
      if (n > len_ - got_) return Fail("server sent more bytes than asked");
      memcpy(buf_ + got_, data, n);
      got_ += n;
      Report();
      return true;
    }
    if (status_ == 200) {
      // Whole-file answer: copy the intersection with [offset, offset+len).
      uint64_t start = stream_pos_, end = stream_pos_ + n;
      stream_pos_ = end;
      if (end > size_) return Fail("200 body longer than the blob");
      uint64_t lo = std::max<uint64_t>(start, offset_), hi = std::min<uint64_t>(end, offset_ + len_);
      if (lo < hi) {
        memcpy(buf_ + (lo - offset_), data + (lo - start), hi - lo);
        got_ += hi - lo;
        Report();
      }
      if (got_ == len_ && content_length_ && size_ - stream_pos_ > HttpRangeSource::kMaxDiscardBytes) {
        done_early_ = true;  // window complete, length already vouched for: close instead of draining
        return false;
      }
      return true;
    }
    // Error answers: keep nothing, read a little so a small body leaves the connection reusable.
    error_body_ += n;
    return error_body_ <= HttpRangeSource::kMaxErrorBodyBytes;
  }

  bool complete() const {
    if (status_ == 206) return got_ == len_;
    if (status_ == 200) return done_early_ || (got_ == len_ && stream_pos_ == size_);
    return false;
  }
  bool done_early() const { return done_early_; }
  const std::string& violation() const { return violation_; }
  uint64_t got() const { return got_; }

 private:
  static bool headers_have_encoding(const std::vector<http::Header>& headers) {
    for (const auto& h : headers)
      if (h.name == "content-encoding" && h.value != "identity") return true;
    return false;
  }
  void Report() {
    if (progress_ && *progress_) (*progress_)(got_);
  }
  bool Fail(std::string why) {
    violation_ = std::move(why);
    return false;
  }

  const uint64_t offset_;
  const uint64_t len_;
  const uint64_t size_;
  char* const buf_;
  const RangeSource::Progress* const progress_;
  long status_ = 0;
  std::optional<uint64_t> content_length_;
  uint64_t got_ = 0;         // bytes of our window written to buf_
  uint64_t stream_pos_ = 0;  // 200 only: position in the whole-file body
  uint64_t error_body_ = 0;
  bool done_early_ = false;
  std::string violation_;
};

}  // namespace

HttpRangeSource::HttpRangeSource(FetchOptions opts, UrlClock url_clock)
    : HttpRangeSource(std::make_shared<http::HttpClient>(std::move(opts)), std::move(url_clock)) {}

HttpRangeSource::HttpRangeSource(std::shared_ptr<http::HttpClient> client, UrlClock url_clock)
    : client_(std::move(client)),
      url_clock_(std::move(url_clock)),
      prepare_pool_(std::make_unique<ThreadPool>(kPrepareThreads)) {}

HttpRangeSource::~HttpRangeSource() { prepare_pool_.reset(); }  // before the slots it touches

std::shared_ptr<HttpRangeSource::Slot> HttpRangeSource::GetSlot(const std::string& key) {
  std::lock_guard<std::mutex> lock(url_mu_);
  auto it = slots_.find(key);
  if (it != slots_.end()) return it->second;
  if (slots_.size() >= kMaxCachedUrls) {
    // Sweep entries nobody is using whose URL expired (or that never got one).
    auto now = UrlNow();
    for (auto s = slots_.begin(); s != slots_.end();) {
      bool idle = s->second.use_count() == 1;
      bool stale = false;
      if (idle) {
        std::unique_lock<std::mutex> sl(s->second->mu, std::try_to_lock);
        stale = sl.owns_lock() && (!s->second->value || s->second->value->valid_until <= now);
      }
      s = stale ? slots_.erase(s) : std::next(s);
    }
  }
  auto slot = std::make_shared<Slot>();
  slots_.emplace(key, slot);
  return slot;
}

void HttpRangeSource::Prepare(const BlobRef& blob) {
  std::shared_ptr<Slot> slot = GetSlot(CacheKey(blob));
  {
    std::unique_lock<std::mutex> lock(slot->mu, std::try_to_lock);
    if (!lock.owns_lock()) return;  // being resolved right now
    if (slot->value && slot->value->valid_until > UrlNow()) return;
  }
  if (prepare_pool_->queued() >= kMaxQueuedPrepares) return;  // a hint: dropped under a burst
  prepare_pool_->Submit([this, blob] {
    Resolved r;
    Attempt a = Resolve(blob, false, &r);  // a failure is left to the read, which retries
    if (a.kind != Attempt::kOk) MODELFS_LOG(kDebug, "prepare: %s", a.status.ToString().c_str());
  });
}

void HttpRangeSource::Invalidate(const BlobRef& blob, const std::string& url) {
  std::shared_ptr<Slot> slot = GetSlot(CacheKey(blob));
  std::lock_guard<std::mutex> lock(slot->mu);
  // Only drop the URL that failed: another thread may already have put a fresh one there.
  if (slot->value && slot->value->url == url) slot->value.reset();
}

HttpRangeSource::Attempt HttpRangeSource::Resolve(const BlobRef& blob, bool force, Resolved* out) {
  std::shared_ptr<Slot> slot = GetSlot(CacheKey(blob));
  // Held across the HEAD on purpose: concurrent readers of the same file wait for one resolution.
  std::lock_guard<std::mutex> lock(slot->mu);
  auto now = UrlNow();
  if (!force && slot->value && slot->value->valid_until > now) {
    *out = *slot->value;
    return Attempt::Ok();
  }
  slot->value.reset();
  Attempt a = ResolveUncached(blob, out);
  if (a.kind == Attempt::kOk) slot->value = *out;
  return a;
}

HttpRangeSource::Attempt HttpRangeSource::ResolveUncached(const BlobRef& blob, Resolved* out) {
  client_->CountResolve();
  const std::string& ep = Endpoint();
  const std::string what = "resolve " + Label(blob);
  std::string url = ep + "/" + blob.repo.ResolvePrefix() + blob.repo.Id() + "/resolve/" +
                    protocol::QuoteRevision(blob.commit) + "/" + protocol::QuotePath(blob.path);
  for (int hop = 0; hop <= kMaxRedirects; ++hop) {
    http::Request req;
    req.head = true;
    req.url = url;
    req.send_auth = protocol::SameOrigin(url, ep);
    http::Response resp = client_->Perform(req, nullptr);
    if (!resp.transport_ok) return Attempt::Retry(Status::Unavailable(what + ": " + resp.error));
    if (req.send_auth) {
      // The endpoint vouches for the content's hash (X-Linked-Etag on LFS redirects, ETag on a
      // direct 200). A mirror whose hash differs from the listing we pinned serves another file:
      // never mix it in (MirrorSet then reads this file elsewhere).
      const std::string* tag = resp.Find("x-linked-etag");
      if (!tag && resp.status == 200) tag = resp.Find("etag");
      if (tag) {
        std::optional<std::string> digest = protocol::ParseEtagDigest(*tag);
        const size_t want_len = blob.hash_kind == HashKind::kSha256 ? 64 : 40;
        if (digest && digest->size() == want_len && blob.hash.size() == want_len && *digest != blob.hash)
          return Attempt::Final(Status::InvalidArgument(what + ": the server's hash " + digest->substr(0, 16) +
                                                        "... differs from the listing's " +
                                                        blob.hash.substr(0, 16) + "..."));
      }
    }
    if (IsRedirect(resp.status)) {
      const std::string* loc = resp.Find("location");
      if (!loc) return Attempt::Retry(Status::InvalidArgument(what + ": redirect without Location"));
      Result<std::string> target = protocol::ResolveLocation(url, *loc);
      if (!target.ok())
        return Attempt::Final(Status::InvalidArgument(what + ": bad Location: " + target.status().message()));
      Result<protocol::Url> parsed = protocol::ParseUrl(*target);
      if (!parsed.ok() || (parsed->scheme != "http" && parsed->scheme != "https"))
        return Attempt::Final(Status::InvalidArgument(what + ": refusing redirect to a non-http(s) URL"));
      if (protocol::SameOrigin(*target, ep)) {
        url = std::move(target.value());  // renamed repo, resolve-cache: keep following, with the token
        continue;
      }
      // The signed CDN URL: never gets the token, valid until its Expires.
      out->url = std::move(target.value());
      out->send_auth = false;
      out->served_by = parsed->HostPort();
      auto now = UrlNow();
      std::optional<int64_t> expires = protocol::ParseExpires(out->url);
      if (expires) {
        int64_t left = *expires - static_cast<int64_t>(time(nullptr)) - kExpiryMargin.count();
        // A URL that expires within the margin is used for this read only (valid_until = now); one
        // valid for longer than kMaxUrlTtl is resolved again after it (and a far-future Expires
        // cannot overflow the clock).
        out->valid_until = now + std::chrono::seconds(std::clamp<int64_t>(left, 0, kMaxUrlTtl.count()));
      } else {
        out->valid_until = now + kDefaultUrlTtl;
      }
      MODELFS_LOG(kDebug, "%s -> %s", what.c_str(), protocol::StripQuery(out->url).c_str());
      return Attempt::Ok();
    }
    if (resp.status == 200) {
      Result<protocol::Url> parsed = protocol::ParseUrl(url);
      out->url = url;
      out->send_auth = true;
      out->served_by = parsed.ok() ? parsed->HostPort() : "";
      out->valid_until = UrlNow() + kDefaultUrlTtl;
      return Attempt::Ok();
    }
    Status s = http::MapHubError(resp, req.send_auth && client_->has_token(), what);
    if (resp.status < 400)
      return Attempt::Final(
          Status::InvalidArgument(what + ": unexpected HTTP " + std::to_string(resp.status)));
    if (http::IsRetryableStatus(resp.status))
      return Attempt::Retry(s, protocol::ParseRetryDelayMs(resp.Get("retry-after"), resp.Get("ratelimit"),
                                                           http::HttpClient::kMaxBackoffMs));
    return Attempt::Final(s);
  }
  return Attempt::Final(Status::InvalidArgument(what + ": too many redirects"));
}

HttpRangeSource::Attempt HttpRangeSource::FetchRange(const Resolved& where, const BlobRef& blob,
                                                     uint64_t offset, size_t len, char* buf,
                                                     size_t* done, const Progress& progress) {
  // Resume where earlier attempts stopped: bytes below *done are in place and may already have
  // been handed to a reader, so they are never written again.
  const size_t base = *done;
  offset += base;
  len -= base;
  buf += base;
  const Progress moved = [&](size_t n) {
    *done = base + n;
    if (progress) progress(*done);
  };
  const std::string what = "read " + Label(blob) + " [" + std::to_string(offset) + "+" + std::to_string(len) +
                           "] from " + where.served_by;
  http::Request req;
  req.url = where.url;
  req.send_auth = where.send_auth;
  req.range = std::make_pair(offset, offset + len - 1);
  RangeSink sink(offset, len, blob.size, buf, &moved);
  http::Response resp = client_->Perform(req, &sink);
  if (!sink.violation().empty()) {
    // The server broke the protocol (wrong range, too many bytes, bad length). Retry: a proxy
    // hiccup is likelier than a permanently broken server, and a persistent one ends as an error.
    return Attempt::Retry(Status::InvalidArgument(what + ": " + sink.violation()));
  }
  if (sink.complete() && (resp.transport_ok || sink.done_early())) return Attempt::Ok();
  if (!resp.transport_ok && (resp.status == 200 || resp.status == 206 || resp.status == 0)) {
    return Attempt::Retry(
        Status::Unavailable(what + ": " + resp.error + " after " + std::to_string(sink.got()) + " bytes"));
  }
  long st = resp.status;
  if (st == 206 || st == 200) {
    return Attempt::Retry(Status::Unavailable(what + ": short " + (st == 200 ? "whole-file " : "") +
                                              "body (HTTP " + std::to_string(st) + ")"));
  }
  const bool cdn = !where.send_auth;
  if (cdn && (st == 400 || st == 401 || st == 403 || st == 404 || IsRedirect(st))) {
    // Expired or revoked signature (S3/CloudFront say 403; some say 400): ask the hub again.
    return Attempt::Reresolve(
        st == 404 ? Status::NotFound(what + ": HTTP 404 from the CDN")
                  : Status::PermissionDenied(what + ": HTTP " + std::to_string(st) + " from the CDN"));
  }
  if (st == 416) {
    return Attempt::Final(Status::InvalidArgument(what + ": HTTP 416, Content-Range '" +
                                                  resp.Get("content-range") + "' (blob size mismatch?)"));
  }
  if (IsRedirect(st))
    return Attempt::Reresolve(Status::InvalidArgument(what + ": unexpected redirect on the data URL"));
  if (http::IsRetryableStatus(st))
    return Attempt::Retry(Status::Unavailable(what + ": HTTP " + std::to_string(st)),
                          protocol::ParseRetryDelayMs(resp.Get("retry-after"), resp.Get("ratelimit"),
                                                      http::HttpClient::kMaxBackoffMs));
  if (st >= 400)
    return Attempt::Final(http::MapHubError(resp, where.send_auth && client_->has_token(), what));
  return Attempt::Final(Status::InvalidArgument(what + ": unexpected HTTP " + std::to_string(st)));
}

Status HttpRangeSource::ReadAt(const BlobRef& blob, uint64_t offset, size_t len, char* buf,
                               std::string* served_by) {
  return ReadAtStreaming(blob, offset, len, buf, served_by, nullptr);
}

Status HttpRangeSource::ReadAtStreaming(const BlobRef& blob, uint64_t offset, size_t len, char* buf,
                                        std::string* served_by, const Progress& progress) {
  if (len == 0 || buf == nullptr || offset > blob.size || len > blob.size - offset) {
    client_->CountFailure();
    return Status::InvalidArgument("ReadAt: range [" + std::to_string(offset) + "+" + std::to_string(len) +
                                   ") outside blob of size " + std::to_string(blob.size));
  }
  const int max_retries = std::max(0, client_->options().max_retries);
  bool reresolved = false;  // the one forced re-resolution after a CDN refusal
  bool force = false;
  size_t done = 0;  // bytes in place: a retry asks only for the rest
  Attempt last;
  for (int attempt = 0; attempt <= max_retries; ++attempt) {
    if (attempt > 0 && !force) {
      if (!client_->options().wait_on_rate_limit &&
          client_->RateLimitedUntil() > std::chrono::steady_clock::now())
        break;  // told to wait: the caller (MirrorSet) goes elsewhere instead
      client_->CountRetry();
      MODELFS_LOG(kInfo, "retry %d: %s", attempt, last.status.ToString().c_str());
      client_->Backoff(attempt, last.delay_ms);
    }
    Resolved where;
    last = Resolve(blob, force, &where);
    force = false;
    if (last.kind == Attempt::kOk) {
      last = FetchRange(where, blob, offset, len, buf, &done, progress);
      if (last.kind == Attempt::kOk) {
        if (served_by) *served_by = where.served_by;
        return Status::Ok();
      }
      if (last.kind == Attempt::kReresolve) {
        Invalidate(blob, where.url);
        if (!reresolved) {
          reresolved = true;
          force = true;
          --attempt;  // a refreshed URL is not a retry of a transient failure
          continue;
        }
        last.kind = Attempt::kFinal;
      }
    }
    if (last.kind == Attempt::kFinal) break;
  }
  client_->CountFailure();
  MODELFS_LOG(kWarn, "giving up: %s", last.status.ToString().c_str());
  if (last.kind == Attempt::kRetry && last.status.code() != Code::kInvalidArgument &&
      last.status.code() != Code::kUnavailable) {
    return Status::Unavailable(last.status.message());
  }
  return last.status;
}

}  // namespace modelfs
