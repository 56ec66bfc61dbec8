// Provenance: who served which blocks of one blob in this run, and whom a failed whole-file hash
// blames. A value type with no lock and no I/O: the store keeps one per blob, guarded by that
// Blob's mu, and the blame across files (HostBlame) under a lock of its own, taken after it.
//
// Which host lied? The whole-file hash cannot say, but who served each stored range narrows it:
//  - one host served every block: it is proven bad for this blob (and 1000 across files);
//  - several did: one of them is blamed, the one blamed least so far for this blob, then the one
//    blamed most across files (a mirror that corrupts one file often corrupts them all), then the
//    one that served fewest blocks (failovers bring a minority from a second mirror). Only its
//    ranges are dropped and refetched (from the others), so if it was the liar the next hash
//    matches at the cost of its ranges alone; if not, the next round blames another;
//  - blocks from an earlier run (no record of their host): nothing to narrow, all are dropped.
// A host blamed for this blob more than another host that answered for it is distrusted: its
// answers are fetched again elsewhere rather than served or stored.
#pragma once

#include <cstdint>
#include <map>
#include <set>
#include <string>
#include <utility>
#include <vector>

namespace modelfs {

// Blame across files, this run: host -> 1000 per file it was proven to have lied about (the sole
// server of a file that failed its hash), plus 1 per file it was blamed for among several.
using HostBlame = std::map<std::string, uint64_t>;

class Provenance {
 public:
  // `host` answered for this blob (its bytes stored or not).
  void Saw(const std::string& host) { hosts_seen_.insert(host); }
  // Blocks [first, last] from `host` were stored; records of earlier ranges overlapping them
  // (e.g. of blocks since evicted) are replaced.
  void Stored(uint32_t first, uint32_t last, const std::string& host);
  // True once any host was blamed for this blob (every answer may have to be judged first).
  bool AnyBlamed() const { return !suspected_.empty(); }
  // True if `host` is blamed for this blob more than another host that answered for it.
  bool Distrusted(const std::string& host) const;

  // After a whole-file hash mismatch: the hosts whose ranges to drop (empty = every block),
  // recording the blame here and in `across`. *sources receives the hosts that served the
  // recorded ranges ("a,b"). `num_blocks`: the blob's; ranges recorded must cover them all for
  // the blame to narrow.
  std::set<std::string> Blame(uint32_t num_blocks, HostBlame* across, std::string* sources);

  // What a drop of the blocks of `only` (empty: of every host) takes away: the hosts to report
  // to the source, and the block ranges [first, last] to drop (empty when all go). Their
  // records are forgotten; the blame stays.
  struct Dropped {
    std::set<std::string> hosts;
    std::vector<std::pair<uint32_t, uint32_t>> ranges;
  };
  Dropped Drop(const std::set<std::string>& only);

 private:
  std::set<std::string> sources_;     // hosts whose stored ranges are recorded
  // Who served each range stored in this run: first block -> (last block, host).
  std::map<uint32_t, std::pair<uint32_t, std::string>> span_host_;
  std::map<std::string, int> suspected_;  // times each host was blamed for a mismatch
  std::set<std::string> proven_bad_;      // hosts that alone served a file that failed its hash
  std::set<std::string> hosts_seen_;      // every host that answered for this blob in this run
};

}  // namespace modelfs
