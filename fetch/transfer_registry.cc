// TransferRegistry: see transfer_registry.h. Every method takes mu_ for its map update only.
#include "fetch/transfer_registry.h"

#include <algorithm>
#include <utility>

namespace modelfs {

void TransferRegistry::Begin(const std::string& file, uint64_t len) {
  const TimePoint now = Now();
  std::lock_guard<std::mutex> lock(mu_);
  auto it = entries_.find(file);
  if (it != entries_.end() && it->second.reads == 0 &&
      std::chrono::duration<double>(now - it->second.last_end).count() > kLingerS) {
    entries_.erase(it);  // an old, finished transfer of this file: start a new one
    it = entries_.end();
  }
  if (it == entries_.end()) {
    if (entries_.size() >= kMaxEntries) {
      // Drop the idle entry that ended first; in-flight ones always stay.
      auto victim = entries_.end();
      for (auto j = entries_.begin(); j != entries_.end(); ++j)
        if (j->second.reads == 0 && (victim == entries_.end() || j->second.last_end < victim->second.last_end))
          victim = j;
      if (victim != entries_.end()) entries_.erase(victim);
    }
    it = entries_.emplace(file, Entry{}).first;
    it->second.first_start = now;
  }
  it->second.reads++;
  it->second.bytes_in_flight += len;
}

void TransferRegistry::SetMirror(const std::string& file, const std::string& mirror) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = entries_.find(file);
  if (it != entries_.end()) it->second.mirror = mirror;
}

void TransferRegistry::End(const std::string& file, uint64_t len, bool ok) {
  const TimePoint now = Now();
  std::lock_guard<std::mutex> lock(mu_);
  auto it = entries_.find(file);
  if (it == entries_.end()) return;
  Entry& e = it->second;
  e.reads--;
  e.bytes_in_flight -= len;
  if (ok) {
    e.bytes_done += len;
  } else {
    e.failed++;
  }
  e.last_end = now;
}

std::vector<TransferInfo> TransferRegistry::Snapshot() const {
  const TimePoint now = Now();
  std::vector<std::pair<TimePoint, TransferInfo>> v;
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (const auto& [file, e] : entries_) {
      const double idle = e.reads > 0 ? 0 : std::chrono::duration<double>(now - e.last_end).count();
      if (idle > kLingerS) continue;
      TransferInfo x;
      x.file = file;
      x.mirror = e.mirror;
      x.bytes_done = e.bytes_done;
      x.bytes_in_flight = e.bytes_in_flight;
      x.reads_in_flight = e.reads;
      x.failed_reads = e.failed;
      x.elapsed_s = std::chrono::duration<double>(now - e.first_start).count();
      x.idle_s = idle;
      const double active = std::max(x.elapsed_s - idle, 1e-3);
      x.speed_Bps = static_cast<double>(e.bytes_done) / active;
      v.emplace_back(e.reads > 0 ? now : e.last_end, std::move(x));
    }
  }
  std::stable_sort(v.begin(), v.end(), [](const auto& a, const auto& b) { return a.first > b.first; });
  std::vector<TransferInfo> out;
  out.reserve(v.size());
  for (auto& p : v) out.push_back(std::move(p.second));
  return out;
}

}  // namespace modelfs
