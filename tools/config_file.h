// Config files: the lowest layers of modelfs's settings, below the environment and the flags
// (the order the rest of the ecosystem uses: pip, git, huggingface_hub):
//
//   1. built-in default
//   2. system file   /etc/modelfs/config          ($MODELFS_SYSTEM_CONFIG overrides the path)
//   3. user file     $XDG_CONFIG_HOME/modelfs/config, else ~/.config/modelfs/config
//                    ($MODELFS_CONFIG overrides the path)
//   4. environment   (each option's variable; for endpoints HF_ENDPOINT, then MODELFS_MIRRORS)
//   5. flags         (--endpoint may be repeated)
//
// Format: UTF-8 text, one `key = value` per line; `#` starts a comment line; blank lines are
// ignored; keys are the long option names without "--" (`endpoint`, `cache-dir`, `ca-file`, ...).
// `endpoint` may appear several times: the file's endpoints, in order, form the mirror list. A
// later layer that names any endpoint replaces the whole list of the layers below it. An unknown
// key or a line without `=` is an error naming file:line (a typo must not be silently ignored).
#pragma once

#include <map>
#include <string>
#include <vector>

#include "common/status.h"
#include "tools/environment.h"

namespace modelfs::cli {

// A setting's value and where it came from ("/etc/modelfs/config:3", "HF_ENDPOINT", "--endpoint",
// "default").
struct Sourced {
  std::string value;
  std::string origin;
};

struct ConfigLayers {
  // key -> values; every key but "endpoint" keeps only its last value (a later file wins).
  std::map<std::string, std::vector<Sourced>> values;
  // Files consulted, in order, with " (read)" or " (absent)".
  std::vector<std::string> files;
  const Sourced* Find(const std::string& key) const {
    auto it = values.find(key);
    return it == values.end() || it->second.empty() ? nullptr : &it->second.back();
  }
};

// The two file paths, from `env` as described above.
std::vector<std::string> ConfigPaths(const Environment& env);

// Parses one file's text. `allowed_keys` lists the accepted keys. `origin` names the file.
Status ParseConfigText(const std::string& text, const std::string& origin,
                       const std::vector<std::string>& allowed_keys, ConfigLayers* into);

// Reads ConfigPaths() in order (a missing file is skipped; an unreadable or malformed one fails).
Result<ConfigLayers> LoadConfigLayers(const std::vector<std::string>& allowed_keys, const Environment& env);
// Same with explicit paths (tests).
Result<ConfigLayers> LoadConfigFiles(const std::vector<std::string>& paths,
                                     const std::vector<std::string>& allowed_keys);

// The effective endpoint list: flags (if any) > environment (HF_ENDPOINT first, then each of
// MODELFS_MIRRORS, split on commas and whitespace) > config files > the --endpoint entry's default
// (https://huggingface.co).
// Trailing slashes are dropped, duplicates removed, and every entry must be http(s)://.
Result<std::vector<Sourced>> EffectiveEndpoints(const ConfigLayers& files,
                                                const std::vector<std::string>& flag_endpoints,
                                                const Environment& env);

}  // namespace modelfs::cli
