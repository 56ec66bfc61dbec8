// The syntax of option values, shared by every command's options and the config files: sizes
// ("20GiB"), percentages ("10%"), durations ("72h"), rates ("100MB/s"), a repo argument
// ("org/name@rev") and a token file's contents. Pure functions: no state, no locks; an error
// names the text it refused (the caller adds the flag).
#pragma once

#include <cstdint>
#include <string>

#include "common/repo.h"
#include "common/status.h"

namespace modelfs::cli {

Result<uint64_t> ParseSize(const std::string& text);      // "20GiB", "512MiB", "1.5G", "1000"
Result<double> ParsePercent(const std::string& text);     // "10%" -> 10
Result<int64_t> ParseDuration(const std::string& text);   // "72h", "30m", "90s", "90" -> seconds
Result<uint64_t> ParseRate(const std::string& text);      // "100MB/s", "1GiB/s", "0" -> bytes/s
Result<RepoId> ParseRepoArg(const std::string& text, std::string* rev);  // "org/name[@rev]"
std::string CleanToken(const std::string& raw);           // without CR/LF and outer blanks

}  // namespace modelfs::cli
