// TransferRegistry: the live transfers `modelfs status` shows, one entry per file being read.
//
// Design. A reader of a range (MirrorSet::ReadAtStreaming, one call per chunk) registers it for
// its duration: Begin when it starts (its bytes count as in flight), SetMirror on each mirror it
// tries (the latest one is shown), End when it returns (its bytes move to done, or it counts as
// failed). Bytes are counted per completed range: fetch/ reports no progress inside one. An entry
// lingers kLingerS after its last read ended, so a small file that came and went between two 1 s
// status polls is still seen; then it is forgotten, and a new read of the file starts a new entry.
// Finished entries beyond kMaxEntries are dropped, the one that ended first first; entries with
// reads in flight are never dropped. The registry knows files only by their label: it holds no
// BlobRef, no mirror and does no I/O.
//
// Time comes from an injectable clock (null: std::chrono::steady_clock), so tests drive the
// linger and the speed without sleeping.
//
// Thread-safe. mu_ guards entries_; it is a leaf lock (nothing else is taken under it) and is held
// only for map updates, never during I/O.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

namespace modelfs {

// One file read now or within the last TransferRegistry::kLingerS seconds.
struct TransferInfo {
  std::string file;              // "org/name@<commit 12>:path"
  std::string mirror;            // host:port of the mirror that took the latest read
  uint64_t bytes_done = 0;       // bytes of reads that completed since the transfer began
  uint64_t bytes_in_flight = 0;  // bytes requested by reads still running
  unsigned reads_in_flight = 0;  // chunk reads running now (demand + prefetch)
  uint64_t failed_reads = 0;     // reads that returned an error
  double elapsed_s = 0;          // since the transfer's first read began
  double idle_s = 0;             // since its last read ended (0 while reads are running)
  double speed_Bps = 0;          // bytes_done / active time (first start to now or last end)
};

class TransferRegistry {
 public:
  using Clock = std::function<std::chrono::steady_clock::time_point()>;

  // A finished transfer stays visible this long (seconds): long enough for a 1 s status poll to
  // see a small file that came and went, short enough that the list stays about the present.
  static constexpr double kLingerS = 10;
  // Bound on remembered transfers (in flight ones are never dropped): a status page, not a log.
  static constexpr size_t kMaxEntries = 64;

  explicit TransferRegistry(Clock clock = nullptr) : clock_(std::move(clock)) {}
  TransferRegistry(const TransferRegistry&) = delete;
  TransferRegistry& operator=(const TransferRegistry&) = delete;

  // A read of `len` bytes of `file` starts. Every Begin must be matched by one End with the same
  // file and len.
  void Begin(const std::string& file, uint64_t len);
  // The read of `file` now goes to `mirror` (a label, e.g. host:port). No-op for an unknown file.
  void SetMirror(const std::string& file, const std::string& mirror);
  // The read of `len` bytes of `file` ended: its bytes are done if ok, else it counts as failed.
  void End(const std::string& file, uint64_t len, bool ok);
  // Files being read now, then recently finished ones; most recently active first. Entries past
  // their linger are left out (and dropped by a later Begin).
  std::vector<TransferInfo> Snapshot() const;

 private:
  using TimePoint = std::chrono::steady_clock::time_point;
  struct Entry {
    std::string mirror;
    uint64_t bytes_done = 0, bytes_in_flight = 0, failed = 0;
    unsigned reads = 0;
    TimePoint first_start, last_end;
  };
  TimePoint Now() const { return clock_ ? clock_() : std::chrono::steady_clock::now(); }

  const Clock clock_;
  mutable std::mutex mu_;               // guards entries_ (a leaf lock)
  std::map<std::string, Entry> entries_;  // by file label
};

}  // namespace modelfs
