#include "cache/offline.h"

namespace modelfs {

Result<std::string> OfflineHubApi::ResolveRevision(const RepoId& repo, const std::string& rev) {
  return Status::Unavailable("offline mode: cannot resolve " + repo.Id() + "@" +
                             (rev.empty() ? std::string("(default)") : rev) + " from the hub");
}

Result<std::vector<FileEntry>> OfflineHubApi::ListTree(const RepoId& repo, const std::string& commit) {
  return Status::Unavailable("offline mode: the tree of " + repo.Id() + "@" + commit +
                             " is not stored in the cache");
}

Status OfflineRangeSource::ReadAt(const BlobRef& blob, uint64_t offset, size_t len, char* buf,
                                  std::string* served_by) {
  return Status::Unavailable("offline mode: " + blob.repo.Id() + "/" + blob.path + " bytes [" +
                             std::to_string(offset) + ", +" + std::to_string(len) +
                             ") are not cached");
}

}  // namespace modelfs
