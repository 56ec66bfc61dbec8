// FakeHubProcess: runs tests/testing/fake_hub.py (the fake hub + CDN) as a child process for one
// test, over repos generated on the fly by tests/testing/gen_repo.py, and talks to its admin API
// (/_admin/log, /_admin/faults, /_admin/config, /_admin/stats) with a tiny blocking HTTP/1.0 client
// over a raw socket, so this helper needs no libcurl (tests/testing/ depends on common/ only).
//
// RAII: the destructor (or Stop()) sends SIGTERM, then SIGKILL after a grace period, and reaps the
// child; the child also gets PR_SET_PDEATHSIG so a crashed test never leaves a server behind.
// Construction never throws: check ok() (failures are also reported with ADD_FAILURE, including the
// tail of the server's stderr).
#pragma once

#include <sys/types.h>

#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "tests/testing/temp_dir.h"

namespace modelfs::testing {

// One repo for gen_repo.py. Fields left at their defaults are not passed (the generator decides).
struct FakeRepoSpec {
  std::string repo = "org/tiny";  // ORG/NAME or a legacy one-segment NAME
  std::string type = "model";     // model | dataset | space
  uint64_t total_size = 0;        // approximate bytes of weights (0: generator default)
  int shards = 0;                 // weight shards (0: generator default)
  bool extra_revision = false;    // older commit tagged v1.0
  bool is_private = false;
  bool gated = false;
  int seed = 0;                         // 0: generator default
  std::vector<std::string> extra_args;  // passed verbatim
};

struct FakeHubOptions {
  std::vector<FakeRepoSpec> repos = {FakeRepoSpec{}};
  // Extra fake_hub.py flags, e.g. {"--page-size", "2", "--small-mode", "direct", "--url-ttl", "1"}.
  std::vector<std::string> hub_args;
  // How long to wait for the ready file (the server imports and indexes the repos first).
  int ready_timeout_ms = 30000;
};

// Result of one admin call.
struct LocalHttpResponse {
  int status = 0;       // 0 if the exchange failed
  std::string headers;  // raw header block
  std::string body;
};

// Blocking HTTP/1.0 request to 127.0.0.1:port (Connection: close, body read to EOF). Returns false
// on a socket error or timeout.
bool LocalHttp(int port, const std::string& method, const std::string& path, const std::string& body,
               LocalHttpResponse* out, int timeout_ms = 10000);

class FakeHubProcess {
 public:
  explicit FakeHubProcess(FakeHubOptions opts = {});
  ~FakeHubProcess();
  FakeHubProcess(const FakeHubProcess&) = delete;
  FakeHubProcess& operator=(const FakeHubProcess&) = delete;

  bool ok() const { return pid_ > 0 && hub_port_ > 0; }
  std::string endpoint() const { return "http://127.0.0.1:" + std::to_string(hub_port_); }
  int hub_port() const { return hub_port_; }
  int cdn_port() const { return cdn_port_; }
  pid_t pid() const { return pid_; }
  const std::string& root() const { return dir_.path(); }

  // Parsed manifest.json of a repo ("" = the first repo of the options).
  const nlohmann::json& manifest(const std::string& repo = "") const;
  // Full commit a ref names in the manifest (branch, tag, PR ref); "" if unknown.
  std::string CommitOf(const std::string& ref, const std::string& repo = "") const;
  // Manifest file entry {path,size,git_oid,sha256,lfs,content...} at a commit, or nullptr.
  const nlohmann::json* FileAt(const std::string& commit, const std::string& path,
                               const std::string& repo = "") const;
  // On-disk content path of a file at a commit ("" if unknown), and its bytes.
  std::string ContentPath(const std::string& commit, const std::string& path,
                          const std::string& repo = "") const;
  std::string Content(const std::string& commit, const std::string& path, const std::string& repo = "") const;

  // Admin API. Each returns false (or a null json) and ADD_FAILUREs if the call failed.
  bool SetFaults(const nlohmann::json& faults);  // replaces the fault set; {} clears it
  bool ClearFaults() { return SetFaults(nlohmann::json::object()); }
  bool SetConfig(const nlohmann::json& config);  // page_size, small_mode, url_ttl, ...
  bool ClearLog();
  nlohmann::json Log();  // array of request records (listener, method, path, query, range, auth...)
  nlohmann::json Stats();
  bool ClearStats();

  // Stops the server (idempotent).
  void Stop();
  // Tail of the server's stdout+stderr (for failure messages).
  std::string ServerOutput() const;

 private:
  bool Generate(const FakeRepoSpec& spec);
  bool Start(const FakeHubOptions& opts);
  nlohmann::json AdminJson(const std::string& method, const std::string& path, const std::string& body);
  std::string RepoKey(const std::string& repo) const { return repo.empty() ? first_repo_ : repo; }

  TempDir dir_;
  pid_t pid_ = -1;
  int hub_port_ = 0;
  int cdn_port_ = 0;
  std::string first_repo_;
  std::map<std::string, nlohmann::json> manifests_;  // repo id -> manifest
  std::map<std::string, std::string> repo_dirs_;     // repo id -> directory of manifest.json
};

}  // namespace modelfs::testing
