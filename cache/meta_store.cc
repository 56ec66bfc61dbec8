#include "cache/meta_store.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <nlohmann/json.hpp>

#include "common/file_util.h"
#include "common/log.h"

namespace modelfs {
namespace {

// Encodes a name for use as one path component: only [A-Za-z0-9_-] pass; everything else,
// including '.', becomes %XX, so ".." or "a/b" can never escape the directory.
std::string Component(const std::string& s) {
  static const char* kHex = "0123456789ABCDEF";
  std::string out;
  for (unsigned char c : s) {
    if (isalnum(c) || c == '_' || c == '-') {
      out.push_back(static_cast<char>(c));
    } else {
      out.push_back('%');
      out.push_back(kHex[c >> 4]);
      out.push_back(kHex[c & 15]);
    }
  }
  return out.empty() ? "%" : out;
}

bool IsCommit(const std::string& s) {
  if (s.size() != 40) return false;
  for (char c : s)
    if (!isdigit(static_cast<unsigned char>(c)) && (c < 'a' || c > 'f')) return false;
  return true;
}

// A filesystem's allocation unit: files and directories are charged in whole pages.
constexpr uint64_t kDiskPage = 4096;

}  // namespace

// Stored metadata is read by later runs, offline ones included: it must survive a power cut.
Status PersistentHubApi::Store(const std::string& path, const std::string& data) {
  const std::string dir = path.substr(0, path.rfind('/'));
  if (charge_) {
    // The file's pages (the temporary copy while a replaced file's old pages still exist is the
    // same size: charged, never refunded, as the quota errs high) and a page per new directory.
    uint64_t bytes = (data.size() + kDiskPage - 1) / kDiskPage * kDiskPage;
    for (std::string d = dir; d.size() > dir_.size() && access(d.c_str(), F_OK) != 0; d = d.substr(0, d.rfind('/'))) {
      bytes += kDiskPage;
    }
    if (!charge_(bytes)) return Status::IoError("no room in the cache quota for " + path);
  }
  Status s = MkdirP(dir);
  return s.ok() ? WriteFileAtomic(path, data, Durability::kPowerCut) : s;
}

PersistentHubApi::PersistentHubApi(HubApi* inner, std::string dir, int64_t revision_ttl_s)
    : inner_(inner), dir_(std::move(dir)), revision_ttl_s_(revision_ttl_s) {}

std::string PersistentHubApi::RepoDir(const RepoId& repo) const {
  return dir_ + "/meta/" + Component(repo.ApiType()) + "/" + Component(repo.ns) + "/" +
         Component(repo.name);
}

Result<std::string> PersistentHubApi::ResolveRevision(const RepoId& repo, const std::string& rev) {
  // A full commit id that we hold a tree for needs no network at all.
  if (IsCommit(rev) && access((RepoDir(repo) + "/trees/" + rev + ".json").c_str(), F_OK) == 0) {
    return rev;
  }
  std::string ref_path = RepoDir(repo) + "/refs/" + (rev.empty() ? "%default" : Component(rev));
  std::string stored;
  struct stat st;
  if (revision_ttl_s_ > 0 && stat(ref_path.c_str(), &st) == 0 &&
      time(nullptr) - st.st_mtime < revision_ttl_s_ && ReadFile(ref_path, &stored) &&
      IsCommit(stored)) {
    return stored;  // confirmed by the hub less than a TTL ago
  }
  auto r = inner_->ResolveRevision(repo, rev);
  if (r.ok()) {
    std::string old;
    if (!ReadFile(ref_path, &old) || old != r.value()) {
      Status s = Store(ref_path, r.value());
      if (!s.ok()) MODELFS_LOG(kWarn, "cannot store ref: %s", s.ToString().c_str());
    } else {
      utimensat(AT_FDCWD, ref_path.c_str(), nullptr, 0);  // confirmed now: the TTL restarts
    }
    return r;
  }
  if (r.status().code() == Code::kUnavailable && ReadFile(ref_path, &stored) && IsCommit(stored)) {
    MODELFS_LOG(kWarn, "hub unreachable (%s); using stored commit %s for %s@%s",
                r.status().message().c_str(), stored.c_str(), repo.Id().c_str(),
                rev.empty() ? "(default)" : rev.c_str());
    return stored;
  }
  return r;
}

Result<std::vector<FileEntry>> PersistentHubApi::ListTree(const RepoId& repo,
                                                          const std::string& commit) {
  std::string path = RepoDir(repo) + "/trees/" + Component(commit) + ".json";
  std::string text;
  if (ReadFile(path, &text)) {
    try {
      auto j = nlohmann::json::parse(text);
      std::vector<FileEntry> out;
      for (const auto& e : j.at("entries")) {
        FileEntry f;
        f.path = e.at("path").get<std::string>();
        f.is_dir = e.at("dir").get<bool>();
        f.size = e.at("size").get<uint64_t>();
        f.git_oid = e.at("oid").get<std::string>();
        f.sha256 = e.at("sha256").get<std::string>();
        out.push_back(std::move(f));
      }
      return out;
    } catch (const std::exception& ex) {
      MODELFS_LOG(kWarn, "stored tree %s unreadable (%s); asking the hub", path.c_str(), ex.what());
    }
  }
  auto r = inner_->ListTree(repo, commit);
  if (!r.ok()) return r;
  nlohmann::json entries = nlohmann::json::array();
  for (const auto& f : r.value()) {
    entries.push_back({{"path", f.path}, {"dir", f.is_dir}, {"size", f.size}, {"oid", f.git_oid},
                       {"sha256", f.sha256}});
  }
  nlohmann::json doc = {{"repo", repo.Id()}, {"type", repo.type}, {"commit", commit}, {"entries", entries}};
  Status s = Store(path, doc.dump());
  if (!s.ok()) MODELFS_LOG(kWarn, "cannot store tree: %s", s.ToString().c_str());
  return r;
}

}  // namespace modelfs
