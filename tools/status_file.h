// The daemon's status file, <cache-dir>/run/status-<pid>.json, and the files the monitor rewrites
// each interval (that one and --metrics-file): their names, their size bound, and how they are
// written. `modelfs status` (tools/cmd_cache.cc) reads the status files back by these names.
//
// Writes go through WriteFileAtomic with Durability::kProcess (temporary file + rename, no
// fsync): the files describe the running process; after a crash a stale or missing one is right
// (the pid check in `modelfs status` tells a stale one apart), and an fsync every second would wear
// an edge box's flash for nothing.
//
// Locks: none. A RewrittenFile is used by one thread at a time (the monitor's, under its
// sample_mu_).
#pragma once

#include <cstdint>
#include <string>

#include <nlohmann/json.hpp>

namespace modelfs::cli {

// The status file's largest size, bytes: a status with every transfer listed (64) and a few
// mirrors is about 20 KiB; a larger one drops its transfers (and indentation).
constexpr uint64_t kStatusFileMax = 64ull << 10;
// Disk the status directory can take (it lives in the cache directory, so the quota keeps room
// for it): the directory's page, the file, and its temporary copy during WriteFileAtomic's rename.
constexpr uint64_t kStatusDiskBound = 4096 + 2 * kStatusFileMax;

// The status file a daemon with this pid writes in status_dir, and the pid a status file name
// belongs to (0 if it is not one).
std::string StatusFileName(int pid);
int StatusFilePid(const std::string& name);

// Removes the status files in `dir` of daemons that died without cleaning up (kill -9, power
// cut): `modelfs status` ignores them anyway (dead pid), but they should not pile up. Files of
// live pids, this process's and anything else are left alone.
void RemoveDeadStatusFiles(const std::string& dir);

// The status JSON as written: indented, held to kStatusFileMax so the run directory stays within
// the quota's reserve for it (kStatusDiskBound): past it, the transfers go first (their count is
// kept as "transfers_dropped"), then the indentation, then all but an error.
std::string StatusText(nlohmann::json status);

// A file rewritten whole, atomically, at each sample. A failure to write is logged once per
// change of outcome (failing, then working again), not at every interval.
class RewrittenFile {
 public:
  RewrittenFile(std::string path, unsigned mode) : path_(std::move(path)), mode_(mode) {}
  void Write(const std::string& content);
  const std::string& path() const { return path_; }

 private:
  std::string path_;
  unsigned mode_;
  bool failing_ = false;
};

}  // namespace modelfs::cli
