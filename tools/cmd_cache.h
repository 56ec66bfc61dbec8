// Cache tools: `modelfs status`, `modelfs verify [REPO]`, `modelfs gc [--size SIZE]`, each with
// `--cache-dir DIR` (default: CacheDirSetting, as for a mount) and `--format text|json`.
// They work on the cache directory's files (cache/cache_admin.h), so they need no daemon and no
// network.
//   status  cache use, filesystem size and free space, and per stored repo revision every file's
//           cached and verified state.
//   verify  re-hashes cached data (every block's XXH3; complete files' SHA-256 / git blob id), drops
//           what is bad; exit code 1 if anything was bad, 0 if all was good. With REPO
//           (ORG/NAME[@REV]) only the files of that repo's stored trees.
//   gc      removes blobs no stored tree references, then (with --size) evicts verified whole
//           files, then partial ones, least recently used first, until block data fits in SIZE.
//           Run it while the cache is not mounted (see cache/cache_admin.h).
#pragma once

#include <string>
#include <vector>

#include "tools/environment.h"

namespace modelfs::cli {

// Each returns the exit code (0 ok; 1 bad data found (verify) or an error; 2 usage error) and
// appends what it would print to `out` (stdout) and `err` (stderr). `env`: where the cache
// directory comes from without --cache-dir (Environment::Process() in the binary).
int StatusCommand(const std::vector<std::string>& args, const Environment& env, std::string* out, std::string* err);
int VerifyCommand(const std::vector<std::string>& args, const Environment& env, std::string* out, std::string* err);
int GcCommand(const std::vector<std::string>& args, const Environment& env, std::string* out, std::string* err);

// The same, writing to stdout/stderr: the entries of tools/main.cc's command table.
int RunStatus(const std::vector<std::string>& args);
int RunVerify(const std::vector<std::string>& args);
int RunGc(const std::vector<std::string>& args);

}  // namespace modelfs::cli

namespace modelfs::cli {

// `modelfs prefetch ORG/NAME[@REV] [--include GLOB]... [--exclude GLOB]... [--pin]
//  [--pin-share PERCENT] [--quiet] [--format json] [mount's network and cache options]`: fills the
// cache with the selected files of a repo (through the same stack as a mount), with a progress
// line on stderr only when it is a terminal. With --pin the repo's selected files are pinned first
// (cache/pins.h), refused (exit 1) if all pins together would take more than PERCENT (default 50%)
// of the cache quota. Exit 0 when every selected file is cached and verified.
int RunPrefetch(const std::vector<std::string>& args);
// `modelfs unpin ORG/NAME [--cache-dir DIR]`: releases a pin; exit 1 if there was none.
int RunUnpin(const std::vector<std::string>& args);

}  // namespace modelfs::cli
