// PersistentHubApi: a HubApi decorator that keeps the hub's metadata answers with the cache, so a
// repo that was mounted before mounts and lists again without the network.
//
//   <dir>/meta/<type>s/<ns>/<name>/refs/<rev>          the commit a revision resolved to
//   <dir>/meta/<type>s/<ns>/<name>/trees/<commit>.json the tree at that commit (immutable)
//
// A tree is keyed by commit, so it never goes stale and is read from disk before asking the hub.
// A revision (branch) is asked of the hub each time a repo is first looked up in a mount (the
// mount then pins it); when the hub is unreachable the stored answer is used. Files are written
// to a temporary name, fsync'd and renamed, so a crash leaves either the old or the new answer.
#pragma once

#include <string>

#include "fetch/hub_api.h"

namespace modelfs {

class PersistentHubApi : public HubApi {
 public:
  // `inner` must outlive this. `dir` is the cache root.
  PersistentHubApi(HubApi* inner, std::string dir);

  Result<std::string> ResolveRevision(const RepoId& repo, const std::string& rev) override;
  Result<std::vector<FileEntry>> ListTree(const RepoId& repo, const std::string& commit) override;

 private:
  std::string RepoDir(const RepoId& repo) const;
  HubApi* const inner_;
  const std::string dir_;
};

}  // namespace modelfs
