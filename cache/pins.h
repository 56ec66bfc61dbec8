// Pins: repos whose cached files eviction must never remove (`modelfs prefetch --pin`, released by
// `modelfs unpin`). One small JSON file per pinned repo revision under <cache-dir>/pins/, written
// with WriteFileAtomic (common/file_util.h, Durability::kPowerCut), listing the content keys it holds. DiskBlobStore reloads the
// set whenever the directory changes, so a pin made while a mount runs takes effect at its next
// eviction. The share of the quota pins may take is checked when a pin is made.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "common/repo.h"
#include "common/status.h"

namespace modelfs {

struct Pin {
  std::string repo;              // "org/name" (datasets: "datasets/org/name")
  std::string commit;
  std::vector<std::string> keys; // content keys of the pinned files
  uint64_t bytes = 0;            // their total size
};

// Stable file name for a repo's pin (one pin per repo; a new pin replaces the old one).
std::string PinFileName(const RepoId& repo);
// Every readable pin under cache_dir/pins.
std::vector<Pin> ListPins(const std::string& cache_dir);
Status SavePin(const std::string& cache_dir, const std::string& file_name, const Pin& pin);
// False if there was no such pin.
bool RemovePin(const std::string& cache_dir, const std::string& file_name);

}  // namespace modelfs
