// HubApi: the metadata half of the hub protocol: which commit a revision names, and what files a
// commit holds. The HTTP implementation is fetch/http_hub_api.h; cache/meta_store.h wraps any HubApi
// to persist answers for offline use.
#pragma once

#include <string>
#include <vector>

#include "common/repo.h"
#include "common/status.h"

namespace modelfs {

class HubApi {
 public:
  virtual ~HubApi() = default;

  // Resolves a branch, tag, short or full commit id to the full 40-hex commit.
  // NotFound for an unknown repo or revision; PermissionDenied for gated/private without access;
  // Unavailable when the hub cannot be reached. Thread-safe.
  virtual Result<std::string> ResolveRevision(const RepoId& repo, const std::string& rev) = 0;

  // Lists every file and directory of `repo` at `commit` (40-hex), following pagination. Entries
  // are validated (see FileEntry); an invalid entry fails the whole listing with InvalidArgument
  // rather than being silently dropped. Thread-safe.
  virtual Result<std::vector<FileEntry>> ListTree(const RepoId& repo, const std::string& commit) = 0;
};

}  // namespace modelfs
