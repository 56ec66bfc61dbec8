#include "cache/provenance.h"

#include <iterator>

namespace modelfs {
namespace {

// Across files, a host proven to have lied about a whole file weighs this many blames among
// several: proof outranks any count of mere suspicion.
constexpr uint64_t kProvenWeight = 1000;

}  // namespace

void Provenance::Stored(uint32_t first, uint32_t last, const std::string& host) {
  sources_.insert(host);
  auto it = span_host_.upper_bound(last);
  while (it != span_host_.begin()) {
    auto prev = std::prev(it);
    if (prev->second.first < first) break;
    it = span_host_.erase(prev);
  }
  span_host_[first] = {last, host};
}

bool Provenance::Distrusted(const std::string& host) const {
  auto score = [&](const std::string& h) {
    auto it = suspected_.find(h);
    return (it == suspected_.end() ? 0 : it->second) + (proven_bad_.count(h) ? static_cast<int>(kProvenWeight) : 0);
  };
  const int mine = score(host);
  if (mine == 0) return false;
  for (const auto& h : hosts_seen_) {
    if (h != host && score(h) < mine) return true;
  }
  return false;
}

std::set<std::string> Provenance::Blame(uint32_t num_blocks, HostBlame* across, std::string* sources) {
  std::map<std::string, uint64_t> blocks;  // blocks served, by host
  uint64_t recorded = 0;
  for (const auto& [first, span] : span_host_) {
    blocks[span.second] += span.first - first + 1;
    recorded += span.first - first + 1;
  }
  for (const auto& [h, n] : blocks) {
    if (!sources->empty()) *sources += ',';
    *sources += h;
  }
  if (recorded < num_blocks || blocks.empty()) return {};
  if (blocks.size() == 1) {
    const std::string& h = blocks.begin()->first;
    proven_bad_.insert(h);
    suspected_[h]++;
    (*across)[h] += kProvenWeight;
    return {};
  }
  auto proven = [&](const std::string& h) {
    auto it = across->find(h);
    return it == across->end() ? 0 : it->second;
  };
  std::string pick;
  for (const auto& [h, n] : blocks) {
    if (pick.empty() || suspected_[h] < suspected_[pick] ||
        (suspected_[h] == suspected_[pick] && proven(h) > proven(pick)) ||
        (suspected_[h] == suspected_[pick] && proven(h) == proven(pick) && n < blocks[pick]))
      pick = h;
  }
  suspected_[pick]++;
  (*across)[pick]++;
  return {pick};
}

Provenance::Dropped Provenance::Drop(const std::set<std::string>& only) {
  Dropped d;
  if (only.empty()) {
    d.hosts.swap(sources_);
    span_host_.clear();
    return d;
  }
  d.hosts = only;
  for (auto it = span_host_.begin(); it != span_host_.end();) {
    if (only.count(it->second.second)) {
      d.ranges.emplace_back(it->first, it->second.first);
      it = span_host_.erase(it);
    } else {
      ++it;
    }
  }
  for (const auto& h : only) sources_.erase(h);
  return d;
}

}  // namespace modelfs
