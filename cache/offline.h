// Offline stand-ins for the network: with `--offline` (or HF_HUB_OFFLINE=1) the engine wires these
// instead of the HTTP hub and range source, so no socket is ever opened. Every call fails at once
// with Unavailable, which the layers above already treat as "network gone": PersistentHubApi
// answers from its stored refs and trees, DiskBlobStore serves cached blocks, and a read that needs
// an uncached block fails immediately (EIO at the FUSE edge) instead of waiting on timeouts.
#pragma once

#include <string>
#include <vector>

#include "fetch/hub_api.h"
#include "fetch/range_source.h"

namespace modelfs {

// A HubApi that never touches the network. Thread-safe (stateless).
class OfflineHubApi : public HubApi {
 public:
  // Always Unavailable ("offline mode").
  Result<std::string> ResolveRevision(const RepoId& repo, const std::string& rev) override;
  // Always Unavailable ("offline mode").
  Result<std::vector<FileEntry>> ListTree(const RepoId& repo, const std::string& commit) override;
};

// A RangeSource that never touches the network. Thread-safe (stateless).
class OfflineRangeSource : public RangeSource {
 public:
  // Always Unavailable ("offline mode"), without writing to buf or served_by.
  Status ReadAt(const BlobRef& blob, uint64_t offset, size_t len, char* buf,
                std::string* served_by) override;
};

}  // namespace modelfs
