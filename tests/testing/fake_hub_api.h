// FakeHubApi: an in-memory HubApi for tests of the layers above fetch/. Repos, refs and trees are
// configured up front (or changed mid-test, e.g. to move a branch), every call is counted, errors
// can be injected per method, and resolutions can be held at a gate (HoldResolves) so a test
// decides exactly when a hub call in progress ends, with no sleep and no timing window.
// Thread-safe.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <map>
#include <mutex>
#include <optional>
#include <string>
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

  // From now on, ResolveRevision calls (of `only`, or of every repo) wait at a gate, before they
  // look anything up, until ReleaseResolves() (or 10 s at most, so a broken test fails instead of
  // hanging). held_resolves() counts the calls waiting there now.
  void HoldResolves(std::optional<RepoId> only = std::nullopt) {
    std::lock_guard<std::mutex> l(gate_mu_);
    holding_ = true;
    hold_only_ = std::move(only);
  }
  void ReleaseResolves() {
    std::lock_guard<std::mutex> l(gate_mu_);
    holding_ = false;
    gate_cv_.notify_all();
  }
  int held_resolves() const {
    std::lock_guard<std::mutex> l(gate_mu_);
    return held_;
  }
  // Waits (5 s at most) until n calls are held at the gate; true if they are.
  bool WaitResolvesHeld(int n) {
    std::unique_lock<std::mutex> l(gate_mu_);
    return gate_cv_.wait_for(l, std::chrono::seconds(5), [&] { return held_ >= n; });
  }

  int resolve_calls() const { return resolve_calls_; }
  int list_calls() const { return list_calls_; }
  // The most recent revision string passed to ResolveRevision.
  std::string last_rev() const {
    std::lock_guard<std::mutex> l(mu_);
    return last_rev_;
  }

  Result<std::string> ResolveRevision(const RepoId& repo, const std::string& rev) override {
    ++resolve_calls_;
    Gate(repo);
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
  void Gate(const RepoId& repo) {
    std::unique_lock<std::mutex> l(gate_mu_);
    if (!holding_ || (hold_only_ && Key(*hold_only_) != Key(repo))) return;
    held_++;
    gate_cv_.notify_all();
    gate_cv_.wait_for(l, std::chrono::seconds(10), [&] { return !holding_; });
    held_--;
  }

  mutable std::mutex mu_;  // guards repos_, the errors and last_rev_
  std::map<std::string, Repo> repos_;
  Status resolve_error_, list_error_;
  std::string last_rev_;
  std::atomic<int> resolve_calls_{0}, list_calls_{0};
  mutable std::mutex gate_mu_;  // guards holding_, hold_only_, held_ (with gate_cv_); never with mu_
  std::condition_variable gate_cv_;
  bool holding_ = false;
  std::optional<RepoId> hold_only_;
  int held_ = 0;
};

}  // namespace modelfs::testing
