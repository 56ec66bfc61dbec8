// The command line: one table of options (flag, environment variable, default, help). Flag
// recognition, `--help` and the config file's keys come from it; tests check the README's option
// list and docs/commands/ against it. tools/ is the only place that reads argv, the environment
// (through tools/environment.h) and token files; it produces typed option structs for each layer.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "cache/disk_blob_store.h"
#include "common/repo.h"
#include "common/status.h"
#include "fetch/fetch_options.h"
#include "fs/fuse_adapter.h"
#include "fs/model_fs.h"
#include "tools/environment.h"
#include "tools/monitor.h"

namespace modelfs::cli {

struct OptionSpec {
  const char* flag;        // "--cache-size"
  const char* short_flag;  // "-f" or nullptr
  const char* env;         // environment variable consulted when the flag is absent, or nullptr
  const char* value_name;  // "SIZE"; nullptr for a boolean switch
  const char* default_text;
  const char* help;
};

// Every option of `modelfs mount`, in --help order.
const std::vector<OptionSpec>& MountOptionTable();
// Keys a config file may set: every option that takes a value, without "--" (tools/config_file.h).
std::vector<std::string> ConfigKeys();

struct MountConfig {
  FetchOptions fetch;
  CacheOptions cache;
  MountOptions mount;
  FsOptions fs;
  MonitorOptions monitor;     // metrics, alerts, status file (tools/monitor.h)
  std::string log_file;       // daemon's log; "" = <cache-dir>/modelfs.log when daemonized
  std::string log_level = "info";
  std::string log_format = "text";  // text | logfmt | json (common/log.h)
};

// Parses `modelfs mount` arguments (argv after "mount") over the config files and the variables
// of `env` (Environment::Process() in the binary; a fixed set in tests). On --help sets *help and
// returns OK.
Status ParseMount(const std::vector<std::string>& args, const Environment& env, MountConfig* out, bool* help);

// The cache directory of a command not given --cache-dir: $MODELFS_CACHE, else the config files'
// `cache-dir`, else ~/.cache/modelfs (what `modelfs mount` uses). Fails on a malformed config file.
Result<std::string> CacheDirSetting(const Environment& env);

// The --help lines of an option table: flag, value, help, default and environment variable.
std::string FormatOptionTable(const std::vector<OptionSpec>& table);
std::string MountHelp();
std::string MainHelp();

// Helpers, exposed for tests.
Result<uint64_t> ParseSize(const std::string& text);      // "20GiB", "512MiB", "1.5G", "1000"
Result<double> ParsePercent(const std::string& text);     // "10%" -> 10
Result<int64_t> ParseDuration(const std::string& text);   // "72h", "30m", "90s", "90" -> seconds
Result<uint64_t> ParseRate(const std::string& text);      // "100MB/s", "1GiB/s", "0" -> bytes/s
Result<RepoId> ParseRepoArg(const std::string& text, std::string* rev);  // "org/name[@rev]"
std::string CleanToken(const std::string& raw);

}  // namespace modelfs::cli
