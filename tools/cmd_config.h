// `modelfs config show [OPTIONS]`: prints the effective settings of `modelfs mount` with where each
// came from (flag, environment variable, config file:line, or default), the endpoint (mirror)
// list first, then the config files consulted. Takes the same value options as `modelfs mount`
// (so `modelfs config show --endpoint A --endpoint B` previews a mirror list). Prints no secret:
// the token is shown only as set/unset with its source.
#pragma once

#include <string>
#include <vector>

#include "tools/environment.h"

namespace modelfs::cli {

// Returns the exit code (0; 2 for a usage error; 1 for a bad config file) and writes to `out`
// (stdout text) or `err` (stderr text). Variables (and so the config file paths) come from `env`.
int ConfigCommand(const std::vector<std::string>& args, const Environment& env, std::string* out,
                  std::string* err);
// ConfigCommand writing to stdout/stderr: the `modelfs config` entry of tools/main.cc.
int RunConfig(const std::vector<std::string>& args);

}  // namespace modelfs::cli
