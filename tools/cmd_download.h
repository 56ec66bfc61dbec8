// `modelfs download ORG/NAME[@REV] --local-dir DIR`: exports a verified copy of a repo at one commit,
// the way `hf download --local-dir` does, but through modelfs's persistent block cache.
//
// Design. The command builds the same fetch -> cache stack as a mount (tools/engine.h), resolves the
// revision to a commit once, lists its tree, filters it with the --include / --exclude globs, and
// copies each file by reading it through DiskBlobStore (which fetches and caches its blocks) into
// DIR/<path>.modelfs-partial. It then re-reads what was written, checks the hub's hash (SHA-256 for
// LFS files, git blob id for the others), and only then renames it into place. So a file under its
// final name is always verified, and an interrupted run resumes cheaply: files already in place are
// re-hashed locally and skipped, and the bytes of the file that was cut off are still in the block
// cache, so they are not fetched again. The exit code is 0 only if every selected file verified.
#pragma once

#include <string>
#include <vector>

#include "common/repo.h"
#include "common/status.h"
#include "tools/options.h"

namespace modelfs::cli {

// Every option of `modelfs download`, in --help order. Options shared with `modelfs mount` mean the
// same and are parsed by ParseMount.
const std::vector<OptionSpec>& DownloadOptionTable();

struct DownloadConfig {
  MountConfig base;  // endpoint, token, cache and network options (mount-only fields unused)
  RepoId repo;
  std::string rev;  // "" = default branch
  std::string local_dir;
  std::vector<std::string> include, exclude;  // globs, as `hf download` takes them
  bool json = false;                          // --format json: the summary as one JSON object
  bool quiet = false;                         // no progress bar even on a terminal
};

// Parses `modelfs download` arguments (argv after "download") plus the environment. On --help sets
// *help and returns OK. InvalidArgument for a usage error.
Status ParseDownload(const std::vector<std::string>& args, const Environment& env, DownloadConfig* out,
                     bool* help);

std::string DownloadHelp();

// Glob filtering as huggingface_hub's filter_repo_objects does it: fnmatch without FNM_PATHNAME
// (so "*" crosses "/"), and a pattern ending in "/" matches everything below that dir. A path is
// selected if it matches any include (or there are none) and no exclude.
bool SelectedByGlobs(const std::string& path, const std::vector<std::string>& include,
                     const std::vector<std::string>& exclude);

// Runs the command; returns the process exit code (0 all verified, 1 failure, 2 usage).
int RunDownload(const std::vector<std::string>& args);

}  // namespace modelfs::cli
