// PersistentHubApi: a HubApi decorator that keeps the hub's metadata answers with the cache, so a
// repo that was mounted before mounts and lists again without the network.
//
//   <dir>/meta/<type>s/<ns>/<name>/refs/<rev>          the commit a revision resolved to
//   <dir>/meta/<type>s/<ns>/<name>/trees/<commit>.json the tree at that commit (immutable)
//
// A tree is keyed by commit, so it never goes stale and is read from disk before asking the hub.
// A full commit id with a stored tree is never asked of the hub. A revision name (branch, tag) is
// answered from its stored ref while that answer is younger than the revision TTL (default 72 h;
// the ref file's mtime is when the hub last confirmed it); after that it is asked of the hub again,
// and when the hub is unreachable (or offline, see cache/offline.h) the stored answer is used
// whatever its age. Files are written with WriteFileAtomic (common/file_util.h,
// Durability::kPowerCut), so a crash or a power cut leaves either the old or the new answer.
#pragma once

#include <cstdint>
#include <functional>
#include <string>

#include "fetch/hub_api.h"

namespace modelfs {

class PersistentHubApi : public HubApi {
 public:
  // How long a resolved branch or tag is trusted before the hub is asked again: 72 h, so a box
  // that boots daily on a weak link does not re-resolve every time, yet picks up new commits
  // within three days.
  static constexpr int64_t kDefaultRevisionTtlSeconds = 72 * 3600;

  // `inner` must outlive this. `dir` is the cache root. revision_ttl_s = 0 asks the hub every time.
  PersistentHubApi(HubApi* inner, std::string dir,
                   int64_t revision_ttl_s = kDefaultRevisionTtlSeconds);

  Result<std::string> ResolveRevision(const RepoId& repo, const std::string& rev) override;
  Result<std::vector<FileEntry>> ListTree(const RepoId& repo, const std::string& commit) override;

  // The cache quota covers the stored metadata: before a file is written, `charge` is asked for
  // the disk it takes (its pages and those of the directories it creates); when it says no, the
  // answer is not stored (it is still returned). Unset: everything is stored. Call before use.
  void SetSpaceCharge(std::function<bool(uint64_t bytes)> charge) { charge_ = std::move(charge); }

 private:
  Status Store(const std::string& path, const std::string& data);
  std::string RepoDir(const RepoId& repo) const;
  HubApi* const inner_;
  const std::string dir_;
  const int64_t revision_ttl_s_;
  std::function<bool(uint64_t)> charge_;
};

}  // namespace modelfs
