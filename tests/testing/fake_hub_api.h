// FakeHubApi: an in-memory HubApi for tests of the layers above fetch/. Repos, refs and trees are
// configured up front (or changed mid-test, e.g. to move a branch), every call is counted, errors
// can be injected per method, and an optional delay inside each call widens race windows so tests
// can check single-flight behaviour. Thread-safe.
#pragma once

#include <atomic>
#include <chrono>
#include <map>
#include <mutex>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "common/repo.h"
#include "common/status.h"
#include "fetch/hub_api.h"

namespace modelfs::testing {

class FakeHubApi : public HubApi {
 public:
  // Declares a repo (type/ns/name) whose default branch is `default_branch`. Revisions "" resolve
  // through the default branch.
  void AddRepo(const RepoId& repo, const std::string& default_branch = "main") {
    std::lock_guard<std::mutex> l(mu_);
    repos_[Key(repo)].default_branch = default_branch;
  }
  // Points branch/tag `ref` (e.g. "main", "v1", "refs/pr/1") at `commit`. Creates the repo if new.
  void SetRef(const RepoId& repo, const std::string& ref, const std::string& commit) {
    std::lock_guard<std::mutex> l(mu_);
    repos_[Key(repo)].refs[ref] = commit;
  }
  // The tree of `repo` at `commit` (40-hex). A full or >= 7-char prefix of a commit with a tree
  // also resolves as a revision.
  void SetTree(const RepoId& repo, const std::string& commit, std::vector<FileEntry> entries) {
    std::lock_guard<std::mutex> l(mu_);
    repos_[Key(repo)].trees[commit] = std::move(entries);
  }
  // Non-ok: every later call of that method fails with it (Status::Ok() clears).
  void SetResolveError(Status s) {
    std::lock_guard<std::mutex> l(mu_);
    resolve_error_ = std::move(s);
  }
  void SetListError(Status s) {
    std::lock_guard<std::mutex> l(mu_);
    list_error_ = std::move(s);
  }
  // Sleeps this long inside every call (without holding the fake's lock).
  void SetDelay(std::chrono::milliseconds d) { delay_ms_ = d.count(); }

  int resolve_calls() const { return resolve_calls_; }
  int list_calls() const { return list_calls_; }
  // The most recent revision string passed to ResolveRevision.
  std::string last_rev() const {
    std::lock_guard<std::mutex> l(mu_);
    return last_rev_;
  }

  Result<std::string> ResolveRevision(const RepoId& repo, const std::string& rev) override {
    ++resolve_calls_;
    Sleep();
    std::lock_guard<std::mutex> l(mu_);
    last_rev_ = rev;
    if (!resolve_error_.ok()) return resolve_error_;
    auto it = repos_.find(Key(repo));
    if (it == repos_.end()) return Status::NotFound("no repo " + Key(repo));
    const Repo& r = it->second;
    const std::string ref = rev.empty() ? r.default_branch : rev;
    if (auto ref_it = r.refs.find(ref); ref_it != r.refs.end()) return ref_it->second;
    if (ref.size() >= 7) {
      for (const auto& [commit, tree] : r.trees) {
        if (commit.compare(0, ref.size(), ref) == 0) return commit;
      }
    }
    return Status::NotFound("no revision " + rev + " in " + Key(repo));
  }

  Result<std::vector<FileEntry>> ListTree(const RepoId& repo, const std::string& commit) override {
    ++list_calls_;
    Sleep();
    std::lock_guard<std::mutex> l(mu_);
    if (!list_error_.ok()) return list_error_;
    auto it = repos_.find(Key(repo));
    if (it == repos_.end()) return Status::NotFound("no repo " + Key(repo));
    auto t = it->second.trees.find(commit);
    if (t == it->second.trees.end()) return Status::NotFound("no commit " + commit);
    return t->second;
  }

 private:
  struct Repo {
    std::string default_branch = "main";
    std::map<std::string, std::string> refs;              // ref -> commit
    std::map<std::string, std::vector<FileEntry>> trees;  // commit -> entries
  };
  static std::string Key(const RepoId& r) { return r.type + ":" + r.Id(); }
  void Sleep() const {
    if (long ms = delay_ms_.load(); ms > 0)
      std::this_thread::sleep_for(std::chrono::milliseconds(ms));
  }

  mutable std::mutex mu_;  // guards repos_, the errors and last_rev_
  std::map<std::string, Repo> repos_;
  Status resolve_error_, list_error_;
  std::string last_rev_;
  std::atomic<long> delay_ms_{0};
  std::atomic<int> resolve_calls_{0}, list_calls_{0};
};

}  // namespace modelfs::testing
