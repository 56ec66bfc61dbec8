// The command line: one table of options (flag, environment variable, default, help). Flag
// recognition, `--help` and the config file's keys come from it; tests check the README's option
// list and docs/commands/ against it. The mount's table is tools/mount_option_table.cc, parsing
// and help tools/options.cc, the values' syntax (sizes, durations, ...) tools/option_values.h.
// tools/ is the only place that reads argv, the environment (through tools/environment.h) and
// token files; it produces typed option structs for each layer.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "cache/disk_blob_store.h"
#include "common/repo.h"
#include "common/status.h"
#include "fetch/fetch_options.h"
#include "fs/fuse_adapter.h"
#include "fs/model_fs.h"
#include "tools/config_file.h"
#include "tools/environment.h"
#include "tools/monitor.h"
#include "tools/option_values.h"

namespace modelfs::cli {

struct MountConfig;

// One command-line option, written once: its flag, variable, default and help. Every command's
// table is a list of these. From `modelfs mount`'s table (MountOptionTable) come flag parsing
// (ParseArgs), each value's resolution and its parsing into MountConfig (ParseMount, through
// `apply`), --help (FormatOptionTable), docs/commands/ (generated from --help), the config files'
// keys (ConfigKeys), `modelfs config show` and mount.modelfs's -o names; tests check the README's
// option table against it.
struct OptionSpec {
  const char* flag = nullptr;          // "--cache-size"
  const char* short_flag = nullptr;    // "-f" or nullptr
  const char* env = nullptr;           // variable consulted when the flag is absent, or nullptr
  const char* value_name = nullptr;    // "SIZE"; nullptr for a switch
  const char* default_text = "";       // the default as --help shows it ("" = none shown)
  const char* help = "";
  // Mount options only. Parses a resolved value into *cfg (a switch gets "1" when on, "" when
  // off); its error names no flag (the caller adds the flag and where the value came from).
  // nullptr: ParseMount treats the option itself (the endpoint list, the token chain, --help).
  Status (*apply)(const std::string& value, MountConfig* cfg) = nullptr;
  // True when default_text is a value that `apply` takes (20GiB, 72h): ParseMount applies it when
  // nothing else sets the option, so the default is written only here. False when it describes a
  // computed or absent default (~/.cache/modelfs, off, system CA store).
  bool default_is_value = false;
};

// Every option of `modelfs mount`, in --help order.
const std::vector<OptionSpec>& MountOptionTable();
// The entry of `flag` in a table, or nullptr.
const OptionSpec* FindOption(const std::vector<OptionSpec>& table, const std::string& flag);
// Keys a config file may set: every option that takes a value, without "--" (tools/config_file.h).
std::vector<std::string> ConfigKeys();

// argv split by an option table: the one tokenizer every command uses.
struct ParsedArgs {
  std::map<std::string, std::vector<std::string>> values;  // flag -> each value given, in order
                                                           // (a switch: "1" per use)
  std::vector<std::string> positional;                     // other words, in order
  bool Has(const std::string& flag) const { return values.count(flag) > 0; }
  // The last value given for `flag` (a later one wins), or nullptr.
  const std::string* Last(const std::string& flag) const;
};
// Accepts "--flag VALUE", "--flag=VALUE", a short flag, and a switch (which takes no value);
// "-" and words not starting with '-' are positional. An unknown option, a missing value or a
// value given to a switch is InvalidArgument naming `command` ("modelfs mount").
Result<ParsedArgs> ParseArgs(const std::vector<std::string>& args, const std::vector<OptionSpec>& table,
                             const std::string& command);

struct MountConfig {
  FetchOptions fetch;
  CacheOptions cache;
  MountOptions mount;
  FsOptions fs;
  MonitorOptions monitor;     // metrics, alerts, status file (tools/monitor.h)
  std::string log_file;       // daemon's log; "" = <cache-dir>/modelfs.log when daemonized
  uint64_t log_max_bytes = 2ull << 20;  // rotate the log file at this size (common/log.h LogToFile)
  std::string log_level = "info";
  std::string log_format = "text";  // text | logfmt | json (common/log.h)

  // Field by field: the options test holds each table default to the struct defaults with it.
  bool operator==(const MountConfig&) const = default;
};

// Parses `modelfs mount` arguments (argv after "mount") over the config files and the variables
// of `env` (Environment::Process() in the binary; a fixed set in tests). On --help sets *help and
// returns OK.
Status ParseMount(const std::vector<std::string>& args, const Environment& env, MountConfig* out, bool* help);

// The table of a command that reads the store without mounting (download, prefetch): `own`, then
// the entries of MountOptionTable() named in `forwarded` (in that table's order; --log-level shows
// "warn", their quieter default: log lines would tear the progress line), then --help.
std::vector<OptionSpec> CommandOptionTable(std::vector<OptionSpec> own, const std::vector<std::string>& forwarded);
// The `forwarded` mount options of `args` as mount argv ("--flag", value, ...; a switch alone),
// plus "--log-level warn" when neither the flag nor $MODELFS_LOG_LEVEL in `env` sets a level.
std::vector<std::string> ForwardedMountArgs(const ParsedArgs& args, const std::vector<std::string>& forwarded,
                                            const Environment& env);

// Where option `o`'s value comes from, highest first: its flag in `args`, its variable in `env`
// (a switch: when Environment::GetBool says yes), the config files, then its default when
// `default_is_value` (a switch: off, ""). nullopt when none gives one.
std::optional<Sourced> ResolveOption(const OptionSpec& o, const ParsedArgs& args, const Environment& env,
                                     const ConfigLayers& files);

// The cache directory of a command not given --cache-dir: $MODELFS_CACHE, else the config files'
// `cache-dir`, else ~/.cache/modelfs (what `modelfs mount` uses). Fails on a malformed config file.
Result<std::string> CacheDirSetting(const Environment& env);
// `--cache-dir` of a command that works on the cache directory without mounting (status, verify,
// gc, unpin): the mount's entry (flag, variable, default) with no `apply`; CacheDirOf reads it.
OptionSpec CacheDirOption();
// Such a command's cache directory: its --cache-dir in `args`, else CacheDirSetting(env).
Result<std::string> CacheDirOf(const ParsedArgs& args, const Environment& env);

// The --help lines of an option table: flag, value, help, default and environment variable.
std::string FormatOptionTable(const std::vector<OptionSpec>& table);
std::string MountHelp();
std::string MainHelp();

}  // namespace modelfs::cli
