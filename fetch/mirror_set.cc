#include "fetch/mirror_set.h"

#include <algorithm>

#include "common/log.h"
#include "fetch/protocol.h"

namespace modelfs {
namespace {

using Clock = std::chrono::steady_clock;
// Floor of a mirror's expected call time: 1 ms, a loopback round trip's order of magnitude.
constexpr double kMinExpectMs = 1.0;

std::string FileKey(const BlobRef& b) { return b.repo.type + "\n" + b.repo.Id() + "\n" + b.commit + "\n" + b.path; }

std::string FileLabel(const BlobRef& b) { return b.repo.Id() + "@" + b.commit.substr(0, 12) + ":" + b.path; }

double Ewma(double old, double sample) {
  return old <= 0 ? sample : old * (1 - MirrorSet::kEwmaAlpha) + sample * MirrorSet::kEwmaAlpha;
}

// 401/403 become EACCES at the mount; this line tells the user why and what to do.
void LogDenied(const std::string& what, const Status& s) {
  MODELFS_LOG(kWarn, "%s: access denied (%s): a token is needed, or the token lacks access; set HF_TOKEN "
              "or --token-file (a gated repo also needs its terms accepted on the hub)",
              what.c_str(), s.message().c_str());
}

}  // namespace

FetchStats MirrorSetStats::Total() const {
  FetchStats t;
  for (const auto& m : mirrors) {
    t.requests += m.http.requests;
    t.retries += m.http.retries;
    t.bytes_received += m.http.bytes_received;
    t.resolves += m.http.resolves;
    t.failures += m.http.failures;
  }
  return t;
}

MirrorSet::MirrorSet(const FetchOptions& opts, CoolDownClock cool_down_clock)
    : opts_(opts), cool_down_clock_(std::move(cool_down_clock)) {
  std::vector<std::string> eps = opts.endpoints.empty() ? std::vector<std::string>{opts.endpoint} : opts.endpoints;
  std::vector<std::string> seen;
  for (std::string ep : eps) {
    while (!ep.empty() && ep.back() == '/') ep.pop_back();
    if (std::find(seen.begin(), seen.end(), ep) != seen.end()) continue;
    seen.push_back(ep);
  }
  const bool multi = seen.size() > 1;
  for (const std::string& ep : seen) {
    auto m = std::make_unique<Mirror>();
    m->endpoint = ep;
    Result<protocol::Url> u = protocol::ParseUrl(ep);
    m->label = u.ok() ? u->HostPort() : ep;
    FetchOptions o = opts;
    o.endpoint = ep;
    o.endpoints.clear();
    // With other mirrors to go to, one quick retry here, then fail over (the outer rounds retry
    // the whole set); alone, the endpoint keeps every configured retry.
    if (multi) {
      o.max_retries = std::min(o.max_retries, 1);
      o.wait_on_rate_limit = false;
    }
    m->client = std::make_shared<http::HttpClient>(o);
    m->hub = std::make_unique<HttpHubApi>(m->client);
    m->source = std::make_unique<HttpRangeSource>(m->client);
    mirrors_.push_back(std::move(m));
  }
}

std::vector<size_t> MirrorSet::Order(uint64_t bytes, const std::string& file_key, size_t* healthy_count) {
  const auto now = Clock::now();
  const auto cd_now = CoolDownNow(now);
  struct Cand {
    size_t i;
    int tier;  // 0 healthy, 1 down, 2 bad for this file
    double cost;
  };
  std::vector<Cand> c;
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (size_t i = 0; i < mirrors_.size(); ++i) {
      Mirror& m = *mirrors_[i];
      Cand x{i, 0, 0};
      // Down until the later of its cool-down and the rate limit it asked for.
      const auto down_left = std::max(m.down_until - cd_now, m.client->RateLimitedUntil() - now);
      if (!file_key.empty()) {
        auto it = m.bad_files.find(file_key);
        if (it != m.bad_files.end() && it->second > cd_now) {
          // Among mirrors bad for this file, the one marked longest ago comes first: a later
          // mark is newer evidence (the cache blames one host at a time, see DiskBlobStore::Blame).
          x.tier = 2;
          x.cost = std::chrono::duration<double, std::milli>(it->second - cd_now).count();
        }
      }
      if (x.tier == 0 && down_left > Clock::duration::zero()) {
        x.tier = 1;
        x.cost = std::chrono::duration<double, std::milli>(down_left).count();
      }
      if (x.tier == 0 && opts_.endpoint_policy == FetchOptions::EndpointPolicy::kOrdered) {
        x.cost = static_cast<double>(i);  // configuration order, whatever the load or speed
      } else if (x.tier == 0) {
        double expect = m.latency_ms;
        if (m.throughput_Bps > 0) expect += 1000.0 * static_cast<double>(bytes) / m.throughput_Bps;
        // An unmeasured mirror counts as kMinExpectMs, so calls in flight still spread the load.
        x.cost = std::max(expect, kMinExpectMs) * (1 + m.inflight.load(std::memory_order_relaxed));
      }
      c.push_back(x);
    }
  }
  std::stable_sort(c.begin(), c.end(), [](const Cand& a, const Cand& b) {
    return a.tier != b.tier ? a.tier < b.tier : a.cost < b.cost;
  });
  std::vector<size_t> out;
  *healthy_count = 0;
  for (const Cand& x : c) {
    out.push_back(x.i);
    if (x.tier == 0) ++*healthy_count;
  }
  return out;
}

void MirrorSet::Record(size_t i, bool ok, uint64_t bytes, double ms, bool small) {
  std::lock_guard<std::mutex> lock(mu_);
  Mirror& m = *mirrors_[i];
  if (!ok) {
    m.calls_failed++;
    return;
  }
  m.calls_ok++;
  m.bytes_read += bytes;
  if (small) {
    m.latency_ms = Ewma(m.latency_ms, std::max(ms, 0.01));
  } else {
    double transfer_ms = std::max(ms - m.latency_ms, 0.01);
    m.throughput_Bps = Ewma(m.throughput_Bps, 1000.0 * static_cast<double>(bytes) / transfer_ms);
  }
  m.down_until = {};  // it works again
}

void MirrorSet::MarkDown(size_t i, const Status& why) {
  Mirror& m = *mirrors_[i];
  {
    std::lock_guard<std::mutex> lock(mu_);
    m.down_until = CoolDownNow(Clock::now()) + std::chrono::seconds(std::max(0L, opts_.mirror_retry_after_s));
  }
  MODELFS_LOG(kWarn, "mirror %s failed (%s); trying it again in %ld s", m.endpoint.c_str(),
              why.ToString().c_str(), opts_.mirror_retry_after_s);
}

void MirrorSet::MarkBadFile(size_t i, const std::string& file_key, const std::string& why) {
  Mirror& m = *mirrors_[i];
  const auto now = CoolDownNow(Clock::now());
  std::lock_guard<std::mutex> lock(mu_);
  if (m.bad_files.size() >= kMaxBadFiles) {
    for (auto it = m.bad_files.begin(); it != m.bad_files.end();) it = it->second <= now ? m.bad_files.erase(it) : std::next(it);
    if (m.bad_files.size() >= kMaxBadFiles) m.bad_files.erase(m.bad_files.begin());
  }
  m.bad_files[file_key] = now + std::chrono::seconds(std::max(0L, opts_.mirror_retry_after_s));
}

template <typename Fn>
Status MirrorSet::Run(const std::string& what, const std::string& file_key, uint64_t bytes, Fn&& fn) {
  // One endpoint: a pass-through (it already retries max_retries times) that still measures.
  if (mirrors_.size() == 1) {
    Mirror& m = *mirrors_[0];
    m.inflight++;
    auto t0 = Clock::now();
    Status s = fn(0);
    m.inflight--;
    Record(0, s.ok(), bytes, std::chrono::duration<double, std::milli>(Clock::now() - t0).count(),
           bytes <= kSmallReadBytes);
    if (s.code() == Code::kPermissionDenied) LogDenied(what, s);
    return s;
  }
  const int rounds = std::max(1, opts_.max_retries);
  Status unavailable, denied, not_found, invalid;
  std::vector<bool> excluded(mirrors_.size(), false);  // final answers for this call
  bool tried_any = false;
  for (int round = 0; round < rounds; ++round) {
    size_t healthy = 0;
    std::vector<size_t> order = Order(bytes, file_key, &healthy);
    // Healthy mirrors (not down, not bad for this file) first; the rest only if none is healthy.
    std::vector<size_t> candidates;
    for (size_t k = 0; k < healthy; ++k)
      if (!excluded[order[k]]) candidates.push_back(order[k]);
    if (candidates.empty())
      for (size_t k = healthy; k < order.size(); ++k)
        if (!excluded[order[k]]) candidates.push_back(order[k]);
    if (candidates.empty()) break;  // every mirror gave a final answer
    for (size_t i : candidates) {
      Mirror& m = *mirrors_[i];
      if (tried_any) {
        failovers_++;
        MODELFS_LOG(kInfo, "%s: failing over to %s", what.c_str(), m.endpoint.c_str());
      }
      tried_any = true;
      m.inflight++;
      auto t0 = Clock::now();
      Status s = fn(i);
      m.inflight--;
      double ms = std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
      Record(i, s.ok(), bytes, ms, bytes <= kSmallReadBytes);
      if (s.ok()) return s;
      switch (s.code()) {
        case Code::kNotFound:
          // This mirror lacks the repo, revision, commit or file: final here, others may have it.
          not_found = s;
          excluded[i] = true;
          break;
        case Code::kPermissionDenied:
          denied = s;
          excluded[i] = true;
          break;
        case Code::kInvalidArgument:
          // Broke the protocol or disagrees about the file's hash: never mix it into this file.
          invalid = s;
          excluded[i] = true;
          if (!file_key.empty()) MarkBadFile(i, file_key, s.message());
          MODELFS_LOG(kWarn, "%s: not using %s for this file: %s", what.c_str(), m.endpoint.c_str(),
                      s.message().c_str());
          break;
        default:
          unavailable = s;
          if (m.client->RateLimitedUntil() > Clock::now()) {
            rate_limited_++;  // it asked us to wait: others carry the load meanwhile
          } else {
            MarkDown(i, s);
          }
          break;
      }
    }
    if (round + 1 < rounds) {
      // Every candidate failed this round: back off (as long as the soonest rate limit asks, at
      // most HttpClient::kMaxBackoffMs) before going round again.
      std::optional<long> wait;
      for (auto& m : mirrors_) {
        auto left = std::chrono::duration_cast<std::chrono::milliseconds>(m->client->RateLimitedUntil() -
                                                                          Clock::now()).count();
        if (left > 0) wait = wait ? std::min<long>(*wait, left) : left;
      }
      mirrors_[0]->client->CountRetry();
      mirrors_[0]->client->Backoff(round + 1, wait);
    }
  }
  if (!unavailable.ok()) return unavailable.code() == Code::kUnavailable ? unavailable : Status::Unavailable(unavailable.message());
  if (!denied.ok()) {
    LogDenied(what, denied);
    return denied;
  }
  if (!invalid.ok()) return invalid;
  if (!not_found.ok()) return not_found;
  return Status::Unavailable(what + ": no mirror could be tried");
}

Result<std::string> MirrorSet::ResolveRevision(const RepoId& repo, const std::string& rev) {
  std::string out;
  Status s = Run("revision " + repo.Id() + "@" + rev, "", 0, [&](size_t i) -> Status {
    Result<std::string> r = mirrors_[i]->hub->ResolveRevision(repo, rev);
    if (!r.ok()) return r.status();
    out = std::move(r.value());
    return Status::Ok();
  });
  if (!s.ok()) return s;
  return out;
}

Result<std::vector<FileEntry>> MirrorSet::ListTree(const RepoId& repo, const std::string& commit) {
  std::vector<FileEntry> out;
  Status s = Run("tree " + repo.Id() + "@" + commit, "", 0, [&](size_t i) -> Status {
    Result<std::vector<FileEntry>> r = mirrors_[i]->hub->ListTree(repo, commit);
    if (!r.ok()) return r.status();
    out = std::move(r.value());
    return Status::Ok();
  });
  if (!s.ok()) return s;
  return out;
}

Status MirrorSet::ReadAt(const BlobRef& blob, uint64_t offset, size_t len, char* buf, std::string* served_by) {
  return ReadAtStreaming(blob, offset, len, buf, served_by, nullptr);
}

Status MirrorSet::ReadAtStreaming(const BlobRef& blob, uint64_t offset, size_t len, char* buf,
                                  std::string* served_by, const Progress& progress) {
  const std::string label = FileLabel(blob);
  const std::string what = "read " + label;
  transfers_.Begin(label, len);
  // A failover resumes after the bytes already in place when they may have been handed to a
  // reader (a streaming caller): the range is then served by two mirrors, and it is labelled
  // with the one that sent most of it. Without a reader waiting, the next mirror sends all of
  // it, so a range has one source and a hash failure blames the right one.
  size_t done = 0;
  size_t best_bytes = 0;
  std::string best;
  Status st = Run(what, FileKey(blob), len, [&](size_t i) -> Status {
    Mirror& m = *mirrors_[i];
    transfers_.SetMirror(label, m.label);
    std::string host;
    if (!progress) done = 0;
    const size_t base = done;
    Status s = m.source->ReadAtStreaming(blob, offset + base, len - base, buf + base, &host,
                                         [&](size_t n) {
                                           done = base + n;
                                           if (progress) progress(done);
                                         });
    if (s.ok()) done = len;
    std::string who = mirrors_.size() == 1 || host == m.label ? (mirrors_.size() == 1 ? host : m.label)
                                                              : m.label + " via " + host;
    if (done - base > best_bytes || best.empty()) {
      best_bytes = done - base;
      best = who;
    }
    if (s.ok() && served_by) *served_by = best;
    return s;
  });
  transfers_.End(label, len, st.ok());
  return st;
}

MirrorSet::~MirrorSet() { WaitWarm(); }

void MirrorSet::Warm() {
  std::lock_guard<std::mutex> l(warm_mu_);
  for (size_t i = 0; i < mirrors_.size(); i++) {
    warmers_.emplace_back([this, i] {
      Mirror& m = *mirrors_[i];
      http::Request req;
      req.head = true;
      req.url = m.endpoint + (!m.endpoint.empty() && m.endpoint.back() == '/' ? "" : "/");
      req.send_auth = true;
      const auto t0 = Clock::now();
      http::Response r = m.client->Perform(req, nullptr);
      const double ms = std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
      if (!r.transport_ok) {
        MODELFS_LOG(kWarn, "mirror %s did not answer at mount (%s, %.0f ms); its first call will tell if it is down",
                    m.endpoint.c_str(), r.error.c_str(), ms);
        return;
      }
      {
        std::lock_guard<std::mutex> lock(mu_);
        if (m.latency_ms <= 0 && r.first_byte_ms > 0) m.latency_ms = r.first_byte_ms;
      }
      MODELFS_LOG(kInfo, "mirror %s answers: HTTP %ld, connected and answered in %.0f ms (round trip %.0f ms)",
                  m.endpoint.c_str(), r.status, ms, r.first_byte_ms);
    });
  }
}

void MirrorSet::WaitWarm() {
  std::vector<std::thread> ts;
  {
    std::lock_guard<std::mutex> l(warm_mu_);
    ts.swap(warmers_);
  }
  for (auto& t : ts) t.join();
}

uint64_t MirrorSet::LatencyHintUs() const {
  const auto now = CoolDownNow(Clock::now());
  std::lock_guard<std::mutex> lock(mu_);
  double best = 0;
  for (const auto& m : mirrors_) {
    if (m->down_until > now) continue;
    // Ordered: reads go to the first healthy mirror, so its latency is the one that matters.
    if (opts_.endpoint_policy == FetchOptions::EndpointPolicy::kOrdered) return static_cast<uint64_t>(m->latency_ms * 1000);
    if (m->latency_ms <= 0) continue;
    if (best == 0 || m->latency_ms < best) best = m->latency_ms;
  }
  return static_cast<uint64_t>(best * 1000);
}

void MirrorSet::Prepare(const BlobRef& blob) {
  size_t healthy = 0;
  std::vector<size_t> order = Order(blob.size, FileKey(blob), &healthy);
  if (!order.empty()) mirrors_[order[0]]->source->Prepare(blob);  // where its first read will go
}

void MirrorSet::ReportBadSource(const BlobRef& blob, const std::string& served_by) {
  std::string mirror_label = served_by.substr(0, served_by.find(' '));
  for (size_t i = 0; i < mirrors_.size(); ++i) {
    if (mirrors_.size() > 1 && mirrors_[i]->label != mirror_label) continue;
    bad_reports_++;
    if (mirrors_.size() > 1) MarkBadFile(i, FileKey(blob), "hash mismatch");
    MODELFS_LOG(kError, "%s: bytes served by %s failed verification; %s", FileLabel(blob).c_str(),
                served_by.c_str(),
                mirrors_.size() > 1 ? "reading this file from the other mirrors" : "it will be fetched again");
    return;
  }
  MODELFS_LOG(kWarn, "%s: bad bytes reported from unknown source '%s'", FileLabel(blob).c_str(), served_by.c_str());
}

MirrorSetStats MirrorSet::Stats() const {
  MirrorSetStats st;
  st.failovers = failovers_.load();
  st.bad_source_reports = bad_reports_.load();
  st.rate_limited = rate_limited_.load();
  const auto now = Clock::now();
  const auto cd_now = CoolDownNow(now);
  std::lock_guard<std::mutex> lock(mu_);
  for (const auto& m : mirrors_) {
    MirrorStats ms;
    ms.endpoint = m->endpoint;
    ms.healthy = m->down_until <= cd_now && m->client->RateLimitedUntil() <= now;
    ms.latency_ms = m->latency_ms;
    ms.throughput_Bps = m->throughput_Bps;
    ms.calls_ok = m->calls_ok;
    ms.calls_failed = m->calls_failed;
    ms.bytes_read = m->bytes_read;
    for (const auto& [k, until] : m->bad_files) ms.bad_files += until > cd_now;
    ms.http = m->client->Stats();
    st.mirrors.push_back(std::move(ms));
  }
  return st;
}

}  // namespace modelfs
